"""Triton Python-backend model: an ONNX network through onnxruntime on CPU.

Self-contained on purpose (numpy, onnxruntime and Triton's pb_utils only): the embedded
tritonserver runs it in its own stub process. Every model folder of the embedded
repository links to this one file; its tensors are the config's inputs and outputs
(EmTrackMichelId's, the jet tagger's), and the config's `parameters` select what it does:

  compute          "onnx" (default) runs the network through onnxruntime on CPU; "torch"
                   runs the same ONNX graph converted to torch by onnx2torch, on `device`;
                   "zeros" returns zeros of the right shape and does no work (the
                   calibration model: transport cost alone)
  device           compute=torch: the torch device (default "cuda")
  torch_dtype      compute=torch: fp32 (default), fp16 or bf16 (the network's weights and
                   floating-point inputs; outputs come back as the config's types)
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
        self.network = None  # compute=torch
        if self.compute == "onnx":
            self.session = self._open_session(args, params)
        elif self.compute == "torch":
            kinds = [kind for _, kind in self.output_types]
            self.network = _TorchNetwork(_onnx_path(args, params), params, self.outputs, kinds)
        elif self.compute != "zeros":
            raise pb_utils.TritonModelException(
                f"parameter compute={self.compute!r}: use 'onnx', 'torch' or 'zeros'"
            )

    def _open_session(self, args, params):
        import onnxruntime as ort

        path = _onnx_path(args, params)
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
        if self.network is not None:
            return self.network.run(batch)
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
        self.network = None


def _onnx_path(args, params):
    path = os.path.join(
        args["model_repository"], args["model_version"], params.get("onnx_model", "model.onnx")
    )
    if not os.path.exists(path):
        raise pb_utils.TritonModelException(
            f"{path} is missing: run 'sonic-bench model export' to generate it"
        )
    return path


class _TorchNetwork:
    """The ONNX graph converted to torch by onnx2torch (a kept converter, not a network
    written again by hand), on a device, in a dtype. Each batch (the requests dynamic
    batching merged) goes to the device in one copy per input and comes back in one per
    output."""

    def __init__(self, path, params, outputs, kinds):
        try:
            import onnx
            import torch
            from onnx2torch import convert
        except ImportError as e:
            raise pb_utils.TritonModelException(
                f"compute=torch needs torch and onnx2torch installed ({e})"
            ) from None
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        name = params.get("torch_dtype", "fp32")
        if name not in dtypes:
            raise pb_utils.TritonModelException(
                f"parameter torch_dtype={name!r}: use {', '.join(dtypes)}"
            )
        self.torch = torch
        self.device = torch.device(params.get("device", "cuda"))
        self.dtype = dtypes[name]
        graph = onnx.load(path)
        order = [o.name for o in graph.graph.output]
        self.pick = [order.index(name) for name in outputs]  # the config's output order
        self.kinds = kinds
        self.module = convert(graph).eval().to(self.device, self.dtype)

    def run(self, batch):
        torch = self.torch
        with torch.inference_mode():
            tensors = []
            for array in batch:
                tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
                tensors.append(tensor.to(self.dtype) if tensor.is_floating_point() else tensor)
            answers = self.module(*tensors)
            if not isinstance(answers, (tuple, list)):
                answers = (answers,)
            return [
                answers[i].float().cpu().numpy().astype(kind, copy=False)
                if answers[i].is_floating_point()
                else answers[i].cpu().numpy().astype(kind, copy=False)
                for i, kind in zip(self.pick, self.kinds, strict=True)
            ]
