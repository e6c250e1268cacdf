"""Triton's HTTP/REST infer with each request built once, on a connection per worker.

tritonclient.http's `infer()` dumps the JSON header and joins it with the 15 MB binary
input on every call, then sends through geventhttpclient; http.client would still build
headers and parse the answer's through the `email` package on every call. On fast
(transport-bound) work that Python is what a client measures. As on gRPC (`grpc_call`),
every batch's request (HTTP head, JSON header, binary tensor: Triton's binary tensor
extension) is built once, and each worker writes those bytes on a keep-alive socket of
its own and reads the answer by its Content-Length, which Triton always sends for infer
answers (never chunked): all this client needs of HTTP/1.1.
"""

from __future__ import annotations

import functools
import json
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass, field

from sonic_bench.engine.answers import ExpectedOutputs
from sonic_bench.engine.sockets import SMALL_ANSWER_BYTES, Connection, address_of, target_of
from sonic_bench.model.signature import WireInput
from sonic_bench.triton.shared_memory import Placement

HEADER_LENGTH = b"inference-header-content-length"
MAX_HEAD_BYTES = 64 * 1024
KNOWN_ANSWERS = 64
# Triton 2.51's HTTP server takes ~1.6x longer per inference to receive a request body
# over 16 MiB than one under it: measured with perf_analyzer as with this client on the
# calibration model (batch 1,820 of 48x48 FP32: 114k inferences/s; 1,821: 70k). gRPC and
# shared-memory requests do not show it.
SLOW_BODY_BYTES = 16 * 1024 * 1024


def slow_body_warning(bodies: Sequence[int]) -> str | None:
    """What to tell a user whose HTTP requests (`bodies`: their sizes in bytes) cross the
    size where Triton slows down."""
    slow = [size for size in bodies if size >= SLOW_BODY_BYTES]
    if not slow:
        return None
    return (
        f"{len(slow)} of {len(bodies)} HTTP requests carry over 16 MiB, which Triton's HTTP "
        "server receives ~1.6x slower per inference: this sweep measures that; gRPC or "
        "--shared-memory does not"
    )


@dataclass(frozen=True)
class RequestBody:
    body: bytes  # the JSON header, then the binary inputs
    json_size: int


def request_bodies(
    batches: Sequence[Sequence[WireInput]], outputs: Sequence[str]
) -> list[RequestBody]:
    """One infer request body per batch: the JSON header, then every input as binary."""
    bodies = []
    for inputs in batches:
        header = {
            "inputs": [
                {
                    "name": tensor.name,
                    "shape": list(tensor.shape),
                    "datatype": tensor.datatype,
                    "parameters": {"binary_data_size": len(tensor.data)},
                }
                for tensor in inputs
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
        text = json.dumps(header).encode()
        bodies.append(RequestBody(b"".join([text, *(t.data for t in inputs)]), len(text)))
    return bodies


def shared_memory_bodies(
    batches: Sequence[Sequence[WireInput]],
    inputs: Sequence[Sequence[Placement]],
    outputs: Sequence[Sequence[tuple[str, Placement]]],
) -> list[RequestBody]:
    """One infer request per batch whose inputs and outputs lie in system shared memory:
    the JSON names regions, offsets and sizes, and no binary data follows."""
    bodies = []
    for tensors, placed, answers in zip(batches, inputs, outputs, strict=True):
        header = {
            "inputs": [
                {
                    "name": tensor.name,
                    "shape": list(tensor.shape),
                    "datatype": tensor.datatype,
                    "parameters": _placed(where),
                }
                for tensor, where in zip(tensors, placed, strict=True)
            ],
            "outputs": [{"name": name, "parameters": _placed(where)} for name, where in answers],
        }
        text = json.dumps(header).encode()
        bodies.append(RequestBody(text, len(text)))
    return bodies


def _placed(where: Placement) -> dict:
    return {
        "shared_memory_region": where.region,
        "shared_memory_offset": where.offset,
        "shared_memory_byte_size": where.byte_size,
    }


class HttpInferError(Exception):
    """Triton answered with an error, or the answer lacks what was asked for."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    # Verdicts by expectation: a small answer that repeats is this same object again
    # (`RawHttpConnection._known`), judged once.
    _verdicts: dict = field(default_factory=dict, compare=False, repr=False)

    def check(self, expected: ExpectedOutputs) -> None:
        """Raise HttpInferError unless Triton answered with every output asked for."""
        verdict = self._verdicts.get(expected)
        if verdict is None:
            verdict = self._verdicts[expected] = self._judge(expected)
        error, problem = verdict
        if self.status != 200:
            raise HttpInferError(error or f"HTTP {self.status}")
        if problem is not None:
            raise HttpInferError(problem)

    def _judge(self, expected: ExpectedOutputs) -> tuple[str | None, str | None]:
        header_size = self.headers.get(HEADER_LENGTH)
        try:
            json_size = int(header_size) if header_size else len(self.body)
        except ValueError:
            raise HttpInferError(
                "the answer's Inference-Header-Content-Length is not a number"
            ) from None
        return _judged(self.body[:json_size], len(self.body) - json_size, self.status, expected)


@functools.lru_cache(maxsize=256)
def _judged(
    text: bytes, binary_bytes: int, status: int, expected: ExpectedOutputs
) -> tuple[str | None, str | None]:
    """An answer's JSON header read and judged: its error, and what is wrong with its
    outputs. The answers to the same batch repeat byte for byte, and parsing one costs
    more than the rest of a request's handling: each is judged once."""
    try:
        header = json.loads(text or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "the answer's header is not JSON"
    if not isinstance(header, dict):
        return None, "the answer's header is not a JSON object"
    if status != 200:
        return header.get("error"), None
    got, carried = [], 0
    for output in header.get("outputs") or ():
        try:
            size = output.get("parameters", {}).get("binary_data_size")
            shape = tuple(int(d) for d in output.get("shape", ()))
            got.append((output["name"], output.get("datatype"), shape, size))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None, "the answer's outputs are not KServe v2 tensors"
        carried += size or 0
    problem = expected.problem(got)
    if problem is None and carried != binary_bytes:
        problem = f"the answer's outputs say {carried} bytes of data, {binary_bytes} came"
    return None, problem


@dataclass(frozen=True)
class _Head:
    status: int
    headers: dict[bytes, bytes]
    length: int  # of the body that follows


class RawHttpConnection(Connection):
    """One keep-alive connection to POST /v2/models/MODEL/infer, one request at a time.
    `infer` sends and waits; an event loop drives the same steps (`begin`, `flush`,
    `advance`) on a non-blocking socket, as on HTTP/2 (`http2`)."""

    def __init__(
        self,
        url: str,
        model: str,
        ssl: bool,
        headers: dict[str, str],
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ):
        tls = ssl_module.create_default_context() if ssl else None
        super().__init__(address_of(url, ssl), tls, timeout_s, connect_timeout_s)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head_prefix = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {target_of(url)}\r\n"
            f"Content-Type: application/octet-stream\r\n{extra}"
        ).encode()
        self._heads: dict[int, bytes] = {}  # per request body, built once
        self._answer_head: _Head | None = None
        self._in_flight = False
        self._known: dict[bytes, Answer] = {}  # small answers, as they arrived

    def infer(self, request: RequestBody, expected: ExpectedOutputs) -> None:
        self.begin(request)
        self.finish(self.advance).check(expected)

    def begin(self, request: RequestBody) -> None:
        try:
            if not self.connected:
                self.open()
                self.settle()
            self.out += (self._head(request), request.body)
            self._answer_head = None
            self._in_flight = True
        except Exception:
            self.close()
            raise

    def advance(self) -> Answer | None:
        """Read what has arrived and parse it: the answer once it is whole, else None."""
        try:
            if not self._in_flight:
                raise RuntimeError("HTTP: advance() without a request in flight")
            while True:
                answer = self._parsed()
                if answer is not None:
                    break
                if not self.receive():
                    return None
            self._in_flight = False
            early = bool(self.out)  # answered before the whole request went
            if early or answer.headers.get(b"connection", b"").lower() == b"close":
                self.close()  # the server will not (or cannot) read a next request here
            return answer
        except Exception:
            self.close()
            raise

    def _parsed(self) -> Answer | None:
        """The answer, if the buffer holds all of it (and it is taken from the buffer).
        Small answers repeat byte for byte (a shared-memory answer names where its
        outputs went): one that arrived whole as before is not parsed again."""
        if self._answer_head is None and 0 < len(self.buffer) <= SMALL_ANSWER_BYTES:
            arrived = bytes(self.buffer)
            if (known := self._known.get(arrived)) is not None:
                self.buffer.clear()
                return known
            answer = self._parse()
            if answer is not None and not self.buffer and len(self._known) < KNOWN_ANSWERS:
                self._known[arrived] = answer
            return answer
        return self._parse()

    def _parse(self) -> Answer | None:
        if self._answer_head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise ConnectionError("the server's answer has no end of headers")
                return None
            self._answer_head = _parse_head(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
        length = self._answer_head.length
        if len(self.buffer) < length:
            return None
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        head, self._answer_head = self._answer_head, None
        return Answer(head.status, head.headers, body)

    def _head(self, request: RequestBody) -> bytes:
        key = id(request)
        if key not in self._heads:
            self._heads[key] = (
                self._head_prefix
                + (
                    f"Inference-Header-Content-Length: {request.json_size}\r\n"
                    f"Content-Length: {len(request.body)}\r\n\r\n"
                ).encode()
            )
        return self._heads[key]

    def close(self) -> None:
        super().close()
        self._answer_head = None
        self._in_flight = False


@functools.lru_cache(maxsize=256)
def _parse_head(text: bytes) -> _Head:
    """A response's status line and headers (they repeat: each is parsed once; read the
    result, do not change it)."""
    status_line, *lines = text.split(b"\r\n")
    status = status_line.split(None, 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise ConnectionError("the server did not answer HTTP")
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return _Head(int(status[1]), headers, int(headers.get(b"content-length", b"0")))
