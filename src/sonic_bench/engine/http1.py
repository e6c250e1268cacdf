"""Triton's HTTP/REST infer with each request built once, on a connection per worker.

tritonclient.http's `infer()` dumps the JSON header and joins it with the 15 MB binary
input on every call, then sends through geventhttpclient; http.client would still build
headers and parse the answer's through the `email` package on every call. On fast
(transport-bound) work that Python is what a client measures. As on gRPC (`grpc_call`),
every batch's request (HTTP head, JSON header, binary tensor: Triton's binary tensor
extension) is built once, and each worker writes those bytes on a keep-alive socket of
its own and reads the answer: by its Content-Length, which Triton always sends for infer
answers, or chunked or up to a close, which a proxy in front of it may send instead.
"""

from __future__ import annotations

import functools
import http
import json
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from sonic_bench.engine.answers import ExpectedOutputs
from sonic_bench.engine.sockets import (
    SMALL_ANSWER_BYTES,
    Connection,
    PeerClosed,
    address_of,
    target_of,
)
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
    reason: str = ""
    # Verdicts by expectation: a small answer that repeats is this same object again
    # (`RawHttpConnection._known`), judged once.
    _verdicts: dict = field(default_factory=dict, compare=False, repr=False)

    def check(self, expected: ExpectedOutputs) -> None:
        """Raise HttpInferError unless Triton answered with every output asked for."""
        if self.status != 200:
            raise HttpInferError(self._error())
        verdict = self._verdicts.get(expected)
        if verdict is None:
            verdict = self._verdicts[expected] = self._judge(expected)
        if verdict is not None:
            raise HttpInferError(verdict)

    def _error(self) -> str:
        """An error answer in one line: Triton's JSON error, or the status and the first
        line of what a proxy in front of it said (its 401, 429 or 502 page)."""
        reason = self.reason or _phrase(self.status)
        status = f"HTTP {self.status}" + (f" {reason}" if reason else "")
        try:
            error = json.loads(self.body or b"{}").get("error")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            error = None
        if isinstance(error, str) and error.strip():
            return f"{status}: {error.strip().splitlines()[0]}"
        text = self.body.decode(errors="replace").strip().splitlines()
        return f"{status}: {text[0][:160]}" if text else status

    @property
    def header_size(self) -> int:
        """Bytes of the JSON header at the body's start (the rest: binary outputs)."""
        given = self.headers.get(HEADER_LENGTH)
        return int(given) if given else len(self.body)

    def _judge(self, expected: ExpectedOutputs) -> str | None:
        header_size = self.headers.get(HEADER_LENGTH)
        try:
            json_size = int(header_size) if header_size else len(self.body)
        except ValueError:
            return "the answer's Inference-Header-Content-Length is not a number"
        if not 0 <= json_size <= len(self.body):
            return f"the answer's Inference-Header-Content-Length {json_size} is past its body"
        return _judged(self.body[:json_size], len(self.body) - json_size, expected)


def _phrase(status: int) -> str:
    """The standard reason phrase, for an answer that gave none (it is optional)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


@functools.lru_cache(maxsize=256)
def _judged(text: bytes, binary_bytes: int, expected: ExpectedOutputs) -> str | None:
    """What is wrong with a 200 answer's outputs, from its JSON header. The answers to
    the same batch repeat byte for byte, and parsing one costs more than the rest of a
    request's handling: each is judged once."""
    try:
        header = json.loads(text or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "the answer's header is not JSON"
    if not isinstance(header, dict):
        return "the answer's header is not a JSON object"
    got, carried = [], 0
    for output in header.get("outputs") or ():
        try:
            size = output.get("parameters", {}).get("binary_data_size")
            shape = tuple(int(d) for d in output.get("shape", ()))
            got.append((output["name"], output.get("datatype"), shape, size))
        except (AttributeError, KeyError, TypeError, ValueError):
            return "the answer's outputs are not KServe v2 tensors"
        carried += size or 0
    problem = expected.problem(got)
    if problem is None and carried != binary_bytes:
        problem = f"the answer's outputs say {carried} bytes of data, {binary_bytes} came"
    return problem


class Framing(Enum):
    """How an answer's body ends (RFC 9112 section 6.3)."""

    NONE = "none"  # 1xx, 204, 304: no body
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # neither: the body ends when the server closes the connection


@dataclass(frozen=True)
class _Head:
    status: int
    reason: str
    headers: dict[bytes, bytes]
    framing: Framing
    length: int  # of the body that follows, for Framing.LENGTH
    keep_alive: bool  # whether the connection may carry the next request


@dataclass
class _Chunks:
    """A chunked body as it is decoded: its chunks so far, the one being read."""

    parts: list[bytes] = field(default_factory=list)
    size: int = -1  # bytes of the chunk being read; -1: its size line comes next
    trailers: bool = False  # the last chunk has come: trailers until an empty line


class RawHttpConnection(Connection):
    """One keep-alive connection to POST /v2/models/MODEL/infer, one request at a time.
    `infer` sends and waits; an event loop drives the same steps (`begin`, `flush`,
    `advance`) on a non-blocking socket, as on HTTP/2 (`http2`).

    What it reads of HTTP/1.1 (RFC 9112): interim (1xx) answers skipped; a body by
    Content-Length, chunked, or up to the server's close; HTTP/1.0 and
    `Connection: close` answers end the connection. Triton sends Content-Length; a proxy
    in front of it may not."""

    def __init__(
        self,
        url: str,
        model: str,
        tls: ssl_module.SSLContext | None,
        headers: dict[str, str],
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ):
        super().__init__(address_of(url, tls is not None), tls, timeout_s, connect_timeout_s)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head_prefix = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {target_of(url)}\r\n"
            f"Content-Type: application/octet-stream\r\n{extra}"
        ).encode()
        self._heads: dict[int, bytes] = {}  # per request body, built once
        self._answer_head: _Head | None = None
        self._chunks: _Chunks | None = None
        self._in_flight = False
        self._known: dict[bytes, _Parsed] = {}  # small answers, as they arrived

    def infer(self, request: RequestBody, expected: ExpectedOutputs) -> Answer:
        self.begin(request)
        answer = self.finish(self.advance)
        answer.check(expected)
        return answer

    def begin(self, request: RequestBody) -> None:
        try:
            if self.connected and self.blocking:
                self.read_idle()  # a server that closed the idle connection: reopen
            if self.connected and self.buffer:
                self.close()  # the server spoke out of turn (a 408 before closing)
            if not self.connected:
                self.open()
            self.out += (self._head(request), request.body)
            self._answer_head = None
            self._chunks = None
            self._in_flight = True
        except Exception:
            self.close()
            raise

    def on_idle_readable(self) -> bool:
        """The server spoke between requests (an event loop saw the socket readable):
        a close, or words out of turn; either way this connection is done. False once it
        is gone."""
        if self.read_idle() and self.buffer:
            self.close()
        return self.connected

    def advance(self) -> Answer | None:
        """Read what has arrived and parse it: the answer once it is whole, else None."""
        try:
            if not self._in_flight:
                raise RuntimeError("HTTP: advance() without a request in flight")
            while True:
                answer = self._parsed()
                if answer is not None:
                    break
                try:
                    if not self.receive():
                        return None
                except PeerClosed:
                    head = self._answer_head
                    if head is None or head.framing is not Framing.CLOSE:
                        raise
                    answer = self._body_complete(bytes(self.buffer))
                    self.buffer.clear()
                    break
            self._in_flight = False
            early = bool(self.out)  # answered before the whole request went
            if early or not answer.keep_alive:
                self.close()  # the server will not (or cannot) read a next request here
            return answer.answer
        except Exception:
            self.close()
            raise

    def _parsed(self) -> _Parsed | None:
        """The answer, if the buffer holds all of it (and it is taken from the buffer).
        Small answers repeat byte for byte (a shared-memory answer names where its
        outputs went): one that arrived whole as before is not parsed again."""
        if self._answer_head is None and 0 < len(self.buffer) <= SMALL_ANSWER_BYTES:
            arrived = bytes(self.buffer)
            if (known := self._known.get(arrived)) is not None:
                self.buffer.clear()
                return known
            answer = self._parse()
            cacheable = answer is not None and answer.keep_alive and not self.buffer
            if cacheable and len(self._known) < KNOWN_ANSWERS:
                self._known[arrived] = answer
            return answer
        return self._parse()

    def _parse(self) -> _Parsed | None:
        while self._answer_head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise ConnectionError("the server's answer has no end of headers")
                return None
            head = _parse_head(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
            if 100 <= head.status < 200:
                if head.status == 101:
                    raise ConnectionError("the server switched protocols (HTTP 101)")
                continue  # an interim answer (100 Continue, 103): the real one follows
            self._answer_head = head
        head = self._answer_head
        if head.framing is Framing.CHUNKED:
            body = self._dechunk()
            return None if body is None else self._body_complete(body)
        if head.framing is Framing.CLOSE:
            return None  # whole when the server closes the connection
        length = head.length if head.framing is Framing.LENGTH else 0
        if len(self.buffer) < length:
            return None
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return self._body_complete(body)

    def _body_complete(self, body: bytes) -> _Parsed:
        head, self._answer_head, self._chunks = self._answer_head, None, None
        answer = Answer(head.status, head.headers, body, head.reason)
        keep_alive = head.keep_alive and head.framing is not Framing.CLOSE
        return _Parsed(answer, keep_alive)

    def _dechunk(self) -> bytes | None:
        """The chunked body once its last chunk and trailers have come, else None."""
        chunks = self._chunks = self._chunks or _Chunks()
        buffer = self.buffer
        while True:
            if chunks.size < 0:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise ConnectionError("a chunk size line without end")
                    return None
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                if chunks.trailers:
                    if not line:
                        return b"".join(chunks.parts)
                    continue  # a trailer field: none of them matters here
                try:
                    chunks.size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ConnectionError(f"a chunk size that is not hex: {line[:40]!r}") from None
                if chunks.size == 0:
                    chunks.size, chunks.trailers = -1, True
                continue
            if len(buffer) < chunks.size + 2:
                return None
            if buffer[chunks.size : chunks.size + 2] != b"\r\n":
                raise ConnectionError("a chunk not followed by CRLF")
            chunks.parts.append(bytes(buffer[: chunks.size]))
            del buffer[: chunks.size + 2]
            chunks.size = -1

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
        self._chunks = None
        self._in_flight = False


@dataclass(frozen=True)
class _Parsed:
    answer: Answer
    keep_alive: bool


@functools.lru_cache(maxsize=256)
def _parse_head(text: bytes) -> _Head:
    """A response's status line and headers (they repeat: each is parsed once; read the
    result, do not change it)."""
    status_line, *lines = text.split(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ConnectionError("the server did not answer HTTP")
    status = int(parts[1])
    reason = parts[2].decode(errors="replace") if len(parts) > 2 else ""
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in headers and name in (b"content-length", b"transfer-encoding"):
            value = headers[name] + b"," + value.strip()
        headers[name] = value.strip()
    tokens = {t.strip() for t in headers.get(b"connection", b"").lower().split(b",")}
    # HTTP/1.0 closes unless asked to keep the connection; HTTP/1.1 keeps it unless told.
    keep_alive = b"keep-alive" in tokens if parts[0] == b"HTTP/1.0" else b"close" not in tokens
    framing, length = _framing(status, headers)
    return _Head(status, reason, headers, framing, length, keep_alive)


def _framing(status: int, headers: dict[bytes, bytes]) -> tuple[Framing, int]:
    if status < 200 or status in (204, 304):
        return Framing.NONE, 0
    coding = headers.get(b"transfer-encoding")
    if coding is not None:
        last = coding.lower().split(b",")[-1].strip()
        return (Framing.CHUNKED, 0) if last == b"chunked" else (Framing.CLOSE, 0)
    given = headers.get(b"content-length")
    if given is None:
        return Framing.CLOSE, 0
    lengths = {v.strip() for v in given.split(b",")}
    if len(lengths) != 1 or not (value := lengths.pop()).isdigit():
        raise ConnectionError(f"the answer's Content-Length is not one number: {given[:40]!r}")
    return Framing.LENGTH, int(value)
