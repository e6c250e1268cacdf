"""Triton Python-backend model: EmTrackMichelId through onnxruntime on CPU.

Self-contained on purpose (numpy, onnxruntime and Triton's pb_utils only): the embedded
tritonserver runs it in its own stub process. Every model folder of the embedded
repository links to this one file; the config's `parameters` select what it does:

  compute          "onnx" (default) runs the network; "zeros" returns zeros of the right
                   shape and does no work (the calibration model: transport cost alone)
  onnx_model       file in the version folder (default model.onnx)
  session_batch    largest batch handed to onnxruntime at once (default 256): on CPU a
                   1693-patch batch makes a ~630 MB conv output and runs ~2x slower per
                   patch than chunks of 256
  intra_op_threads onnxruntime threads (0 = onnxruntime's choice, one per core)
  slowdown         extra fraction of compute time spent idle, for testing that a
                   regression check catches a slower model (default 0)
"""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

INPUT = "main_input"
OUTPUTS = ("em_trk_none_netout/Softmax", "michel_netout/Sigmoid")
OUTPUT_WIDTHS = (3, 1)


def _parameters(model_config):
    raw = model_config.get("parameters", {})
    return {key: value["string_value"] for key, value in raw.items()}


class TritonPythonModel:
    def initialize(self, args):
        params = _parameters(json.loads(args["model_config"]))
        self.compute = params.get("compute", "onnx")
        self.session_batch = int(params.get("session_batch", "256"))
        self.slowdown = float(params.get("slowdown", "0"))
        self.session = None
        if self.compute == "onnx":
            self.session = self._open_session(args, params)
        elif self.compute != "zeros":
            raise pb_utils.TritonModelException(
                f"parameter compute={self.compute!r}: use 'onnx' or 'zeros'"
            )

    def _open_session(self, args, params):
        import onnxruntime as ort

        path = os.path.join(
            args["model_repository"], args["model_version"], params.get("onnx_model", "model.onnx")
        )
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} is missing: run 'sonic-bench model export' to generate it"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        # Dynamic batching hands several requests over at once: run them as one batch.
        inputs = [pb_utils.get_input_tensor_by_name(r, INPUT).as_numpy() for r in requests]
        sizes = [len(x) for x in inputs]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        outputs = self._infer(batch)
        responses = []
        start = 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(n, o[start : start + size])
                for n, o in zip(OUTPUTS, outputs, strict=False)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _infer(self, batch):
        if self.session is None:
            return [np.zeros((len(batch), w), np.float32) for w in OUTPUT_WIDTHS]
        began = time.perf_counter()
        chunks = [
            self.session.run(OUTPUTS, {INPUT: batch[i : i + self.session_batch]})
            for i in range(0, len(batch), self.session_batch)
        ]
        if self.slowdown > 0:
            time.sleep(self.slowdown * (time.perf_counter() - began))
        if len(chunks) == 1:
            return chunks[0]
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(OUTPUTS))]

    def finalize(self):
        self.session = None
