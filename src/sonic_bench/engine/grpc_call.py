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
        tls: ssl_module.SSLContext | None,
        headers: dict[str, str],
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ):
        target = target_of(url)
        address = address_of(url, tls is not None)
        self.last: Response | None = None  # the last answer judged as asked
        self.connection = Http2Connection(address, tls, timeout_s, connect_timeout_s)
        self._header_block = Http2Connection.encode_headers(
            [
                (":method", "POST"),
                (":scheme", "https" if tls is not None else "http"),
                (":path", METHOD),
                (":authority", target),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-accept-encoding", "identity"),
                ("grpc-timeout", f"{max(1, round(timeout_s))}S"),
                *((k.lower(), v) for k, v in headers.items()),
            ]
        )

    def infer(self, request: bytes, expected: ExpectedOutputs) -> None:
        answer = self.connection.request(self._header_block, request)
        _judge(answer, expected)
        self.last = answer

    def begin(self, request: bytes) -> None:
        self.connection.begin(self._header_block, request)

    def advance(self, expected: ExpectedOutputs) -> bool:
        """True once the answer is whole and as expected; raises GrpcCallError if not."""
        answer = self.connection.advance()
        if answer is None:
            return False
        _judge(answer, expected)
        self.last = answer
        return True

    def last_message(self) -> bytes:
        """The last answer's ModelInferResponse (judged as asked already)."""
        return self.last.data[5:]

    def close(self) -> None:
        self.connection.close()


# gRPC's own mapping of an HTTP status that came without a grpc-status (a proxy's answer,
# not the server's): doc/http-grpc-status-mapping.md in grpc/grpc.
HTTP_TO_GRPC = {
    400: "INTERNAL",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "UNIMPLEMENTED",
    429: "UNAVAILABLE",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}


def _judge(answer: Response, expected: ExpectedOutputs) -> None:
    """Raise GrpcCallError unless the call succeeded with the outputs asked for."""
    headers = answer.headers
    status = headers.get(b"grpc-status")
    http = headers.get(b":status", b"?").decode(errors="replace")
    if status is None or http != "200":
        _not_grpc(answer, http, status)
    if status != b"0":
        try:
            code = STATUS_NAMES.get(int(status), f"status {status.decode()}")
        except ValueError:
            code = f"status {status.decode(errors='replace')!r}"
        message = unquote(headers.get(b"grpc-message", b"").decode(errors="replace"))
        raise GrpcCallError(code, message.strip().splitlines()[0] if message.strip() else code)
    message = _message(answer.data, headers)
    if len(message) <= SMALL_ANSWER_BYTES:
        problem = _small_problem(message, expected)
    else:
        problem = _problem(message, expected)
    if problem is not None:
        raise GrpcCallError("INVALID_ANSWER", problem)


def _not_grpc(answer: Response, http: str, status: bytes | None) -> None:
    """An answer that is not a gRPC status: an HTTP error from something in front of
    the server (a gateway's 401 or 503), named by gRPC's mapping of its status."""
    if http == "200" and status is None:
        kind = answer.headers.get(b"content-type", b"").decode(errors="replace")
        if not kind.startswith("application/grpc"):
            raise GrpcCallError("UNKNOWN", f"the answer is not gRPC (content-type {kind!r})")
        raise GrpcCallError("UNKNOWN", "no grpc-status in the answer (HTTP 200)")
    if http.isdigit() and http != "200":
        code = HTTP_TO_GRPC.get(int(http), "UNKNOWN")
        text = answer.data.decode(errors="replace").strip().splitlines()
        detail = f": {text[0][:160]}" if text and status is None else ""
        raise GrpcCallError(code, f"HTTP {http} from the server or a proxy in front{detail}")
    raise GrpcCallError("UNKNOWN", f"the answer has no valid :status ({http!r})")


def _message(data: bytes, headers: dict[bytes, bytes]) -> bytes:
    """The one message of a unary answer, held to its 5-byte prefix (flag, length)."""
    if len(data) < 5:
        raise GrpcCallError("INTERNAL", "the answer has no message")
    if data[0] != 0:
        encoding = headers.get(b"grpc-encoding", b"?").decode(errors="replace")
        raise GrpcCallError(
            "INTERNAL",
            f"the answer is compressed (grpc-encoding {encoding}), and sonic-bench asks for "
            "none (grpc-accept-encoding identity)",
        )
    length = int.from_bytes(data[1:5], "big")
    if length != len(data) - 5:
        what = "is cut short" if length > len(data) - 5 else "has bytes after its message"
        raise GrpcCallError(
            "INTERNAL", f"the answer {what} ({length} bytes said, {len(data) - 5} came)"
        )
    return data[5:]


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
