"""The smallest HTTP/2 client a unary gRPC call needs, on one socket per worker.

grpc's Python API spends ~170 us of CPU and ~240 us of latency around every call (its
call objects, completion queues and threads); on shared-memory requests, which the server
answers in ~250 us, that is what a Python client measures instead of the server
(perf_analyzer, C++: ~100 us). A unary call is one HEADERS frame and a few DATA frames
each way, so this client writes and reads those frames itself: ~40 us of CPU per call.

What it does of HTTP/2 (RFC 9113): the preface and SETTINGS (acknowledged both ways),
flow control both ways (the peer's windows before sending DATA; a window of 2^31-1 for
what it receives, topped up on the connection), PING answered, GOAWAY and RST_STREAM
as errors, one stream at a time. Header blocks are (de)compressed by `hpack`. No server
push, no priorities, no concurrent streams: one worker, one request in flight.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import hpack

from sonic_bench.triton.sockets import connect

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_STREAM_ID = 2**31 - 1
RECV_BYTES = 1 << 18
MAX_IOVECS = 512  # buffers per sendmsg, under the kernel's IOV_MAX (1024)


class Frame(IntEnum):
    DATA = 0
    HEADERS = 1
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    WINDOW_UPDATE = 8
    CONTINUATION = 9


END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY = 0x20
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
CANCEL = struct.pack(">I", 0x8)  # RST_STREAM's error code


class StreamReset(Exception):
    """The peer reset the stream (RST_STREAM) or is going away (GOAWAY)."""


def _frame_head(kind: Frame, flags: int, stream: int, length: int) -> bytes:
    return struct.pack(">I", length)[1:] + struct.pack(">BBI", kind, flags, stream)


def frame(kind: Frame, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _frame_head(kind, flags, stream, len(payload)) + payload


@dataclass(frozen=True)
class Response:
    headers: dict[bytes, bytes]  # the response's headers and trailers together
    data: bytes


@dataclass
class _Stream:
    """The one stream in flight: what the peer lets us send, what it has answered."""

    id: int
    send_window: int
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: list[bytes] = field(default_factory=list)
    done: bool = False


class Http2Connection:
    """One client connection: `request(header_block, body)` sends one stream and returns
    its answer. Not thread-safe: a worker owns it."""

    def __init__(
        self, address: tuple[str, int], tls: ssl_module.SSLContext | None, timeout_s: float
    ):
        self._address = address
        self._tls = tls
        self._timeout_s = timeout_s
        self._socket: socket.socket | None = None
        self._buffer = bytearray()
        self._decoder = hpack.Decoder()
        self._next_stream = 1
        self._send_window = DEFAULT_WINDOW  # the connection's, granted by the peer
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._received = 0  # DATA bytes since our last connection WINDOW_UPDATE

    @staticmethod
    def encode_headers(headers: Sequence[tuple[str, str]]) -> bytes:
        """A header block that needs no shared state (no dynamic table): built once."""
        encoder = hpack.Encoder()
        encoder.header_table_size = 0
        return encoder.encode([(k.encode(), v.encode()) for k, v in headers], huffman=False)

    def request(self, header_block: bytes, body: bytes | memoryview) -> Response:
        """One stream: the header block, then the body (not empty) as DATA."""
        try:
            return self._request(header_block, memoryview(body))
        except Exception:
            # A connection that failed mid-stream cannot be trusted: the next request
            # opens a fresh one (as a client after a server restart would).
            self.close()
            raise

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _connect(self) -> None:
        sock = connect(self._address, self._tls, self._timeout_s)
        if self._tls is not None and sock.selected_alpn_protocol() != "h2":
            sock.close()
            raise ConnectionError("the server did not agree to HTTP/2 over TLS (ALPN)")
        self._socket = sock
        self._buffer.clear()
        self._decoder = hpack.Decoder()
        self._next_stream = 1
        self._send_window = self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._received = 0
        settings = struct.pack(
            ">HIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW
        )
        grow = struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW)
        sock.sendall(
            PREFACE + frame(Frame.SETTINGS, 0, 0, settings) + frame(Frame.WINDOW_UPDATE, 0, 0, grow)
        )

    def _request(self, header_block: bytes, body: memoryview) -> Response:
        if self._socket is None or self._next_stream > MAX_STREAM_ID:
            self.close()
            self._connect()
        stream = _Stream(self._next_stream, self._peer_initial_window)
        self._next_stream += 2
        pending: list = [frame(Frame.HEADERS, END_HEADERS, stream.id, header_block)]
        sent = 0
        while sent < len(body) and not stream.done:
            allowed = min(self._send_window, stream.send_window, len(body) - sent)
            if allowed > 0:
                sent = self._queue_data(pending, stream, body, sent, allowed)
            self._flush(pending)
            if sent < len(body):  # out of window: the peer's WINDOW_UPDATE comes next
                self._process(self._read_frame(), stream)
        while not stream.done:
            self._process(self._read_frame(), stream)
        if sent < len(body):
            # Answered before the whole request went (an early error): we stop sending,
            # and say so, so that the server does not wait for the rest.
            self._socket.sendall(frame(Frame.RST_STREAM, 0, stream.id, CANCEL))
        return Response(stream.headers, b"".join(stream.data))

    def _queue_data(
        self, pending: list, stream: _Stream, body: memoryview, sent: int, allowed: int
    ) -> int:
        """DATA frames for the next `allowed` bytes of the body, END_STREAM on its last."""
        end = sent + allowed
        while sent < end:
            size = min(self._peer_max_frame, end - sent)
            flags = END_STREAM if sent + size == len(body) else 0
            pending += (_frame_head(Frame.DATA, flags, stream.id, size), body[sent : sent + size])
            sent += size
        self._send_window -= allowed
        stream.send_window -= allowed
        return sent

    def _flush(self, buffers: list) -> None:
        """Write every queued buffer (gathered, a few hundred per system call)."""
        while buffers:
            batch = buffers[:MAX_IOVECS]
            written = self._socket.sendmsg(batch)
            if written == sum(len(b) for b in batch):
                del buffers[: len(batch)]
                continue
            for index, chunk in enumerate(batch):  # a partial write: resume mid-buffer
                if written < len(chunk):
                    buffers[: index + 1] = [memoryview(chunk)[written:]]
                    break
                written -= len(chunk)

    def _process(self, received: tuple[int, int, int, bytes], stream: _Stream) -> None:
        kind, flags, on, payload = received
        if kind == Frame.DATA:
            self._count_received(len(payload))  # flow control counts every stream's DATA
            if on == stream.id:
                stream.data.append(_unpadded(flags, payload))
                stream.done = bool(flags & END_STREAM)
        elif kind == Frame.HEADERS and on == stream.id:
            stream.headers.update(self._header_block(flags, payload))
            stream.done = bool(flags & END_STREAM)
        elif kind == Frame.SETTINGS and not flags & ACK:
            self._apply_settings(payload, stream)
            self._socket.sendall(frame(Frame.SETTINGS, ACK, 0))
        elif kind == Frame.PING and not flags & ACK:
            self._socket.sendall(frame(Frame.PING, ACK, 0, payload))
        elif kind == Frame.WINDOW_UPDATE:
            (increment,) = struct.unpack(">I", payload[:4])
            if on == 0:
                self._send_window += increment & MAX_WINDOW
            elif on == stream.id:
                stream.send_window += increment & MAX_WINDOW
        elif kind == Frame.RST_STREAM and on == stream.id:
            (code,) = struct.unpack(">I", payload[:4])
            raise StreamReset(f"HTTP/2 stream reset by the server (error code {code})")
        elif kind == Frame.GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            if (last & MAX_STREAM_ID) < stream.id:
                raise StreamReset(f"HTTP/2 GOAWAY from the server (error code {code})")
            self._next_stream = MAX_STREAM_ID + 1  # finish this stream, then reconnect

    def _header_block(self, flags: int, payload: bytes) -> dict[bytes, bytes]:
        block = _unpadded(flags, payload)
        if flags & PRIORITY:
            block = block[5:]
        while not flags & END_HEADERS:
            kind, flags, _, more = self._read_frame()
            if kind != Frame.CONTINUATION:
                raise ConnectionError("HTTP/2: a header block was cut by another frame")
            block += more
        return dict(self._decoder.decode(block, raw=True))

    def _apply_settings(self, payload: bytes, stream: _Stream) -> None:
        for offset in range(0, len(payload) - len(payload) % 6, 6):
            key, value = struct.unpack(">HI", payload[offset : offset + 6])
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                stream.send_window += value - self._peer_initial_window
                self._peer_initial_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self._peer_max_frame = value

    def _count_received(self, size: int) -> None:
        self._received += size
        if self._received > MAX_WINDOW // 2:
            grant = struct.pack(">I", self._received)
            self._socket.sendall(frame(Frame.WINDOW_UPDATE, 0, 0, grant))
            self._received = 0

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        head = self._read(9)
        length = int.from_bytes(head[:3], "big")
        stream = int.from_bytes(head[5:9], "big") & MAX_STREAM_ID
        return head[3], head[4], stream, self._read(length) if length else b""

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._socket.recv(RECV_BYTES)
            if not chunk:
                raise ConnectionError("the server closed the HTTP/2 connection")
            self._buffer += chunk
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def _unpadded(flags: int, payload: bytes) -> bytes:
    if flags & PADDED:
        return payload[1 : len(payload) - payload[0]]
    return payload
