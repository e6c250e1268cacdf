"""ModelInfer over gRPC with each request serialized once, on a channel per worker.

tritonclient's `infer()` builds and serializes the protobuf of a 15 MB request on every
call and shares nothing between calls; with the GIL that is where a Python client spends
its time on fast (transport-bound) work. perf_analyzer prepares its requests once; so do
we: the ModelInferRequest of every batch is serialized when the batches are encoded, and
the channel sends those bytes as they are (no request serializer).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

from sonic_bench.model.emtrackmichel import INPUT_NAME
from sonic_bench.triton.shared_memory import Placement

METHOD = "/inference.GRPCInferenceService/ModelInfer"
# 1693 patches are 15.6 MB; gRPC's default limit is 4 MB.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]


def serialized_requests(
    model: str, batches: Sequence[np.ndarray], outputs: Sequence[str]
) -> list[bytes]:
    """One serialized ModelInferRequest per batch (FP32 input, raw contents)."""
    requests = []
    for batch in batches:
        request = service_pb2.ModelInferRequest(model_name=model)
        tensor = request.inputs.add(name=INPUT_NAME, datatype="FP32")
        tensor.shape.extend(batch.shape)
        for name in outputs:
            request.outputs.add(name=name)
        request.raw_input_contents.append(np.ascontiguousarray(batch, np.float32).tobytes())
        requests.append(request.SerializeToString())
    return requests


def shared_memory_requests(
    model: str,
    shapes: Sequence[tuple[int, ...]],
    inputs: Sequence[Placement],
    outputs: Sequence[Sequence[tuple[str, Placement]]],
) -> list[bytes]:
    """One serialized ModelInferRequest per batch whose input and outputs lie in system
    shared memory: the request names regions, offsets and sizes, and carries no data."""
    requests = []
    for shape, placed, answers in zip(shapes, inputs, outputs, strict=True):
        request = service_pb2.ModelInferRequest(model_name=model)
        tensor = request.inputs.add(name=INPUT_NAME, datatype="FP32")
        tensor.shape.extend(shape)
        _place(tensor.parameters, placed)
        for name, where in answers:
            _place(request.outputs.add(name=name).parameters, where)
        requests.append(request.SerializeToString())
    return requests


def _place(parameters, where: Placement) -> None:
    parameters["shared_memory_region"].string_param = where.region
    parameters["shared_memory_offset"].int64_param = where.offset
    parameters["shared_memory_byte_size"].int64_param = where.byte_size


class RawInferChannel:
    """One worker's channel; `infer(request_bytes)` returns the parsed response."""

    def __init__(self, url: str, ssl: bool, headers: dict[str, str], timeout_s: float):
        target = url.split("://", 1)[-1]
        if ssl:
            self._channel = grpc.secure_channel(
                target, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS
            )
        else:
            self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._call = self._channel.unary_unary(
            METHOD,
            request_serializer=None,  # the bytes are the serialized request
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        self._metadata = tuple((k.lower(), v) for k, v in headers.items()) or None
        self._timeout_s = timeout_s

    def infer(self, request: bytes) -> service_pb2.ModelInferResponse:
        return self._call(request, timeout=self._timeout_s, metadata=self._metadata)

    def close(self) -> None:
        self._channel.close()
