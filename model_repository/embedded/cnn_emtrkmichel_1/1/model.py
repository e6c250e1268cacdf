"""Triton Python-backend model: an ONNX network through onnxruntime on CPU.

Self-contained on purpose (numpy, onnxruntime and Triton's pb_utils only): the embedded
tritonserver runs it in its own stub process. Every model folder of the embedded
repository links to this one file; its tensors are the config's inputs and outputs
(EmTrackMichelId's, the jet tagger's), and the config's `parameters` select what it does:

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


def _parameters(model_config):
    raw = model_config.get("parameters", {})
    return {key: value["string_value"] for key, value in raw.items()}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = _parameters(config)
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        # For the zero-compute answers: each output's shape per sample and numpy type.
        self.output_types = [
            (tuple(tensor["dims"]), pb_utils.triton_string_to_numpy(tensor["data_type"]))
            for tensor in config["output"]
        ]
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
        given = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs]
            for r in requests
        ]
        sizes = [len(tensors[0]) for tensors in given]
        if len(given) == 1:
            batch = given[0]
        else:
            batch = [np.concatenate(column) for column in zip(*given, strict=True)]
        outputs = self._infer(batch, sum(sizes))
        responses = []
        start = 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(n, o[start : start + size])
                for n, o in zip(self.outputs, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _infer(self, batch, size):
        if self.session is None:
            return [np.zeros((size, *dims), kind) for dims, kind in self.output_types]
        began = time.perf_counter()
        step = self.session_batch
        chunks = [
            self.session.run(
                self.outputs, {n: x[i : i + step] for n, x in zip(self.inputs, batch, strict=True)}
            )
            for i in range(0, size, step)
        ]
        if self.slowdown > 0:
            time.sleep(self.slowdown * (time.perf_counter() - began))
        if len(chunks) == 1:
            return chunks[0]
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(self.outputs))]

    def finalize(self):
        self.session = None
