"""Triton's HTTP/REST infer with each request built once, on a connection per worker.

tritonclient.http's `infer()` dumps the JSON header and joins it with the 15 MB binary
input on every call, then sends through geventhttpclient; http.client would still build
headers and parse the answer's through the `email` package on every call. On fast
(transport-bound) work that Python is what a client measures. As on gRPC (`grpc_raw`),
every batch's request (HTTP head, JSON header, binary tensor: Triton's binary tensor
extension) is built once, and each worker writes those bytes on a keep-alive socket of
its own and reads the answer by its Content-Length, which Triton always sends for infer
answers (never chunked): all this client needs of HTTP/1.1.
"""

from __future__ import annotations

import json
import socket
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sonic_bench.model.emtrackmichel import INPUT_NAME
from sonic_bench.triton.shared_memory import Placement
from sonic_bench.triton.sockets import address_of, connect, target_of

HEADER_LENGTH = b"inference-header-content-length"
MAX_LINE_BYTES = 64 * 1024
# Triton 2.51's HTTP server takes ~1.6x longer per inference to receive a request body
# over 16 MiB than one under it: measured with perf_analyzer as with this client on the
# calibration model (batch 1,820 of 48x48 FP32: 114k inferences/s; 1,821: 70k). gRPC and
# shared-memory requests do not show it.
SLOW_BODY_BYTES = 16 * 1024 * 1024


def slow_body_warning(batches: Sequence[np.ndarray]) -> str | None:
    """What to tell a user whose HTTP requests cross the size where Triton slows down."""
    slow = [b for b in batches if b.nbytes >= SLOW_BODY_BYTES]
    if not slow:
        return None
    per_patch = slow[0].nbytes // max(len(slow[0]), 1)
    return (
        f"{len(slow)} of {len(batches)} HTTP requests carry over 16 MiB (batches over "
        f"{SLOW_BODY_BYTES // per_patch} patches), which Triton's HTTP server receives ~1.6x "
        "slower per inference: this sweep measures that; gRPC or --shared-memory does not"
    )


@dataclass(frozen=True)
class RequestBody:
    body: bytes  # the JSON header, then the binary input
    json_size: int


def request_bodies(batches: Sequence[np.ndarray], outputs: Sequence[str]) -> list[RequestBody]:
    """One infer request body per batch: the JSON header, then the FP32 input as binary."""
    bodies = []
    for batch in batches:
        data = np.ascontiguousarray(batch, np.float32).tobytes()
        header = {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": list(batch.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
        text = json.dumps(header).encode()
        bodies.append(RequestBody(text + data, len(text)))
    return bodies


def shared_memory_bodies(
    shapes: Sequence[tuple[int, ...]],
    inputs: Sequence[Placement],
    outputs: Sequence[Sequence[tuple[str, Placement]]],
) -> list[RequestBody]:
    """One infer request per batch whose input and outputs lie in system shared memory:
    the JSON names regions, offsets and sizes, and no binary data follows."""
    bodies = []
    for shape, placed, answers in zip(shapes, inputs, outputs, strict=True):
        header = {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": list(shape),
                    "datatype": "FP32",
                    "parameters": _placed(placed),
                }
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
class _Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class RawHttpConnection:
    """One worker's keep-alive connection to POST /v2/models/MODEL/infer."""

    def __init__(self, url: str, model: str, ssl: bool, headers: dict[str, str], timeout_s: float):
        self._address = address_of(url, ssl)
        self._tls = ssl_module.create_default_context() if ssl else None
        self._timeout_s = timeout_s
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head_prefix = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {target_of(url)}\r\n"
            f"Content-Type: application/octet-stream\r\n{extra}"
        ).encode()
        self._heads: dict[int, bytes] = {}  # per request body, built once
        self._socket: socket.socket | None = None
        self._reader = None

    def _connect(self) -> None:
        sock = connect(self._address, self._tls, self._timeout_s)
        self._socket, self._reader = sock, sock.makefile("rb")

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

    def _exchange(self, request: RequestBody) -> _Answer:
        if self._socket is None:
            self._connect()
        self._socket.sendall(self._head(request))
        self._socket.sendall(request.body)
        status = self._reader.readline(MAX_LINE_BYTES).split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/"):
            raise ConnectionError("the server closed the connection or did not answer HTTP")
        headers: dict[bytes, bytes] = {}
        while (line := self._reader.readline(MAX_LINE_BYTES)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        body = self._reader.read(length)
        if len(body) != length:
            raise ConnectionError("the server closed the connection mid-answer")
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return _Answer(int(status[1]), headers, body)

    def infer(self, request: RequestBody, expected_outputs: int) -> None:
        try:
            answer = self._exchange(request)
        except Exception:
            # A connection that failed mid-request cannot be reused: the next call opens
            # a fresh one (as a client retrying after a server restart would).
            self.close()
            raise
        header_size = answer.headers.get(HEADER_LENGTH)
        text = answer.body[: int(header_size)] if header_size else answer.body
        header = json.loads(text or b"{}")
        if answer.status != 200:
            raise HttpInferError(header.get("error") or f"HTTP {answer.status}")
        if len(header.get("outputs", ())) != expected_outputs:
            raise HttpInferError("response has no output tensor")

    def close(self) -> None:
        for closable in (self._reader, self._socket):
            if closable is not None:
                closable.close()
        self._socket = self._reader = None
