"""ModelInfer over gRPC with each request serialized once, on a connection per worker.

tritonclient's `infer()` builds and serializes the protobuf of a 15 MB request on every
call and shares nothing between calls; with the GIL that is where a Python client spends
its time on fast (transport-bound) work. perf_analyzer prepares its requests once; so do
we: the ModelInferRequest of every batch is serialized, and framed as a gRPC message,
when the batches are encoded. Even then grpc's Python API costs ~170 us of CPU per call,
more than the server takes to answer a shared-memory request, so the call itself goes
over this module's own HTTP/2 connection (`http2`): a unary gRPC call is one request
stream with a header block built once and the framed message, answered by headers, one
message and trailers carrying grpc-status.
"""

from __future__ import annotations

import functools
import ssl as ssl_module
import struct
from collections.abc import Sequence
from urllib.parse import unquote

import grpc
from tritonclient.grpc import service_pb2

from sonic_bench.engine.answers import ExpectedOutputs
from sonic_bench.engine.http2 import Http2Connection, Response
from sonic_bench.engine.sockets import SMALL_ANSWER_BYTES, address_of, target_of
from sonic_bench.model.signature import WireInput
from sonic_bench.triton.shared_memory import Placement

METHOD = "/inference.GRPCInferenceService/ModelInfer"
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def grpc_message(serialized: bytes) -> bytes:
    """A message as gRPC frames it on the wire: not compressed, its length, its bytes."""
    return struct.pack(">BI", 0, len(serialized)) + serialized


def serialized_requests(
    model: str, batches: Sequence[Sequence[WireInput]], outputs: Sequence[str]
) -> list[bytes]:
    """One ModelInferRequest per batch (every input's raw contents), serialized and framed."""
    requests = []
    for inputs in batches:
        request = service_pb2.ModelInferRequest(model_name=model)
        for tensor in inputs:
            request.inputs.add(name=tensor.name, datatype=tensor.datatype).shape.extend(
                tensor.shape
            )
            request.raw_input_contents.append(tensor.data)
        for name in outputs:
            request.outputs.add(name=name)
        requests.append(grpc_message(request.SerializeToString()))
    return requests


def shared_memory_requests(
    model: str,
    batches: Sequence[Sequence[WireInput]],
    inputs: Sequence[Sequence[Placement]],
    outputs: Sequence[Sequence[tuple[str, Placement]]],
) -> list[bytes]:
    """One ModelInferRequest per batch whose inputs and outputs lie in system shared
    memory (serialized and framed): it names regions, offsets and sizes, and carries no
    data."""
    requests = []
    for tensors, placed, answers in zip(batches, inputs, outputs, strict=True):
        request = service_pb2.ModelInferRequest(model_name=model)
        for tensor, where in zip(tensors, placed, strict=True):
            message = request.inputs.add(name=tensor.name, datatype=tensor.datatype)
            message.shape.extend(tensor.shape)
            _place(message.parameters, where)
        for name, where in answers:
            _place(request.outputs.add(name=name).parameters, where)
        requests.append(grpc_message(request.SerializeToString()))
    return requests


def _place(parameters, where: Placement) -> None:
    parameters["shared_memory_region"].string_param = where.region
    parameters["shared_memory_offset"].int64_param = where.offset
    parameters["shared_memory_byte_size"].int64_param = where.byte_size


class GrpcCallError(Exception):
    """The call ended with a gRPC status other than OK: its name and message."""

    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class RawInferChannel:
    """One worker's connection; `infer(framed_request)` returns the parsed response. An
    event loop drives the same call in steps: `begin`, then `flush` and `advance` (the
    response once it is whole) on the non-blocking `connection`."""

    def __init__(
        self,
        url: str,
        ssl: bool,
        headers: dict[str, str],
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ):
        target = target_of(url)
        tls = None
        if ssl:
            tls = ssl_module.create_default_context()
            tls.set_alpn_protocols(["h2"])
        self.connection = Http2Connection(address_of(url, ssl), tls, timeout_s, connect_timeout_s)
        self._header_block = Http2Connection.encode_headers(
            [
                (":method", "POST"),
                (":scheme", "https" if ssl else "http"),
                (":path", METHOD),
                (":authority", target),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", f"{max(1, round(timeout_s))}S"),
                *((k.lower(), v) for k, v in headers.items()),
            ]
        )

    def infer(self, request: bytes, expected: ExpectedOutputs) -> None:
        _judge(self.connection.request(self._header_block, request), expected)

    def begin(self, request: bytes) -> None:
        self.connection.begin(self._header_block, request)

    def advance(self, expected: ExpectedOutputs) -> bool:
        """True once the answer is whole and as expected; raises GrpcCallError if not."""
        answer = self.connection.advance()
        if answer is None:
            return False
        _judge(answer, expected)
        return True

    def close(self) -> None:
        self.connection.close()


def _judge(answer: Response, expected: ExpectedOutputs) -> None:
    """Raise GrpcCallError unless the call succeeded with the outputs asked for."""
    status = answer.headers.get(b"grpc-status")
    if status is None:
        http = answer.headers.get(b":status", b"?").decode()
        raise GrpcCallError("UNKNOWN", f"no grpc-status in the answer (HTTP {http})")
    if status != b"0":
        code = STATUS_NAMES.get(int(status), f"status {status.decode()}")
        message = unquote(answer.headers.get(b"grpc-message", b"").decode())
        raise GrpcCallError(code, message.strip().splitlines()[0] if message else code)
    if len(answer.data) < 5 or answer.data[0] != 0:
        raise GrpcCallError("INTERNAL", "the answer has no uncompressed message")
    message = answer.data[5:]
    if len(message) <= SMALL_ANSWER_BYTES:
        problem = _small_problem(message, expected)
    else:
        problem = _problem(message, expected)
    if problem is not None:
        raise GrpcCallError("INVALID_ANSWER", problem)


def _problem(message: bytes, expected: ExpectedOutputs) -> str | None:
    try:
        response = service_pb2.ModelInferResponse.FromString(message)
    except Exception:  # protobuf's DecodeError, or worse from a broken peer
        return "the answer is not a ModelInferResponse"
    contents = response.raw_output_contents
    got = [
        (o.name, o.datatype, tuple(o.shape), len(contents[i]) if i < len(contents) else None)
        for i, o in enumerate(response.outputs)
    ]
    return expected.problem(got)


@functools.lru_cache(maxsize=256)
def _small_problem(message: bytes, expected: ExpectedOutputs) -> str | None:
    """A small answer judged once: shared-memory answers repeat byte for byte, and parsing
    costs more than the rest of a request's handling."""
    return _problem(message, expected)
