"""The smallest HTTP/2 client a unary gRPC call needs, on one socket per worker.

grpc's Python API spends ~170 us of CPU and ~240 us of latency around every call (its
call objects, completion queues and threads); on shared-memory requests, which the server
answers in ~250 us, that is what a Python client measures instead of the server
(perf_analyzer, C++: ~100 us). A unary call is one HEADERS frame and a few DATA frames
each way, so this client writes and reads those frames itself: ~30 us of CPU per call.

What it does of HTTP/2 (RFC 9113): the preface and SETTINGS (acknowledged both ways),
flow control both ways (the peer's windows before sending DATA; a window of 2^31-1 for
what it receives, topped up on the connection), PING answered, GOAWAY and RST_STREAM
as errors, one stream at a time. Header blocks are (de)compressed by `hpack`. No server
push, no priorities, no concurrent streams: one connection, one request in flight.
Blocking (`request`, for a Locust user or a simple loop) or driven step by step from an
event loop (`begin`, `flush`, `advance` on a non-blocking socket: the sweep's drivers).
"""

from __future__ import annotations

import ssl as ssl_module
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import hpack

from sonic_bench.engine.sockets import Connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_STREAM_ID = 2**31 - 1
DECODED_BLOCKS = 64


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
WINDOW_FRAMES = frozenset((Frame.WINDOW_UPDATE, Frame.SETTINGS))


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
    """The one stream in flight: its body, how much of it went, what the peer lets us
    send, what it has answered."""

    id: int
    send_window: int
    body: memoryview
    sent: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: list[bytes] = field(default_factory=list)
    done: bool = False


class Http2Connection(Connection):
    """One client connection, one stream at a time. `request(header_block, body)` sends
    a stream and waits for its answer. The same steps, one at a time, let an event loop
    drive many connections from one thread (no GIL hand-offs between worker threads):
    `begin` queues the stream, `flush` writes what the socket takes, `advance` reads what
    has arrived and returns the answer once it is whole. Not thread-safe: one owner."""

    def __init__(
        self,
        address: tuple[str, int],
        tls: ssl_module.SSLContext | None,
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ):
        super().__init__(address, tls, timeout_s, connect_timeout_s)
        self._decoder = hpack.Decoder()
        self._decoded_blocks: dict[tuple[bytes, int], dict[bytes, bytes]] = {}
        self._table_version = 0  # counts the decodes that changed the dynamic table
        self._next_stream = 1
        self._send_window = DEFAULT_WINDOW  # the connection's, granted by the peer
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._received = 0  # DATA bytes since our last connection WINDOW_UPDATE
        self._stream: _Stream | None = None

    @staticmethod
    def encode_headers(headers: Sequence[tuple[str, str]]) -> bytes:
        """A header block that needs no shared state (no dynamic table): built once."""
        encoder = hpack.Encoder()
        encoder.header_table_size = 0
        return encoder.encode([(k.encode(), v.encode()) for k, v in headers], huffman=False)

    def request(self, header_block: bytes, body: bytes | memoryview) -> Response:
        """One stream: the header block, then the body (not empty) as DATA; blocks."""
        self.begin(header_block, body)
        return self.finish(self.advance)

    def begin(self, header_block: bytes, body: bytes | memoryview) -> None:
        """Open the next stream (connecting first if needed) and queue what it may send."""
        try:
            if not self.connected or self._next_stream > MAX_STREAM_ID:
                self._connect()
            stream = _Stream(self._next_stream, self._peer_initial_window, memoryview(body))
            self._next_stream += 2
            self._stream = stream
            self.out.append(frame(Frame.HEADERS, END_HEADERS, stream.id, header_block))
            self._queue_data(stream)
        except Exception:
            self.close()
            raise

    def advance(self) -> Response | None:
        """Read what has arrived (blocking: wait for something) and process it: the answer
        once the stream has ended, else None."""
        try:
            stream = self._stream
            if stream is None:
                raise RuntimeError("HTTP/2: advance() without a stream in flight")
            while not stream.done:
                received = self._next_frame()
                if received is None:
                    return None
                self._process(received, stream)
                if received[0] in WINDOW_FRAMES:  # more of the body may go now
                    self._queue_data(stream)
                if self.out:  # more body, or an acknowledgement the peer waits for
                    self.flush()
            self._stream = None
            if stream.sent < len(stream.body) or self.out:
                self._stop_sending(stream)
            return Response(stream.headers, b"".join(stream.data))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        super().close()
        self._stream = None

    def _stop_sending(self, stream: _Stream) -> None:
        """Answered before the whole request went (an early error): we stop sending, and
        say so, so that the server does not wait for the rest. A frame already half
        written cannot be taken back: then the connection goes (the next request opens
        a fresh one)."""
        if self.out:
            self.close()
            return
        self.out = [frame(Frame.RST_STREAM, 0, stream.id, CANCEL)]
        self.flush()

    def _connect(self) -> None:
        sock = self.open()
        if self.tls is not None and sock.selected_alpn_protocol() != "h2":
            self.close()
            raise ConnectionError("the server did not agree to HTTP/2 over TLS (ALPN)")
        self._decoder = hpack.Decoder()
        self._decoded_blocks = {}
        self._table_version = 0
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
        self.settle()

    def _queue_data(self, stream: _Stream) -> None:
        """DATA frames for as much of the body as both windows allow, END_STREAM on its
        last."""
        body = stream.body
        allowed = min(self._send_window, stream.send_window, len(body) - stream.sent)
        if allowed <= 0 or stream.done:
            return
        sent, end = stream.sent, stream.sent + allowed
        while sent < end:
            size = min(self._peer_max_frame, end - sent)
            flags = END_STREAM if sent + size == len(body) else 0
            self.out += (_frame_head(Frame.DATA, flags, stream.id, size), body[sent : sent + size])
            sent += size
        stream.sent = sent
        self._send_window -= allowed
        stream.send_window -= allowed

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
            self.out.append(frame(Frame.SETTINGS, ACK, 0))
        elif kind == Frame.PING and not flags & ACK:
            self.out.append(frame(Frame.PING, ACK, 0, payload))
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
        if not flags & END_HEADERS:
            # Triton never splits a header block; a CONTINUATION is read whole here even
            # on a non-blocking socket (it follows at once).
            block += self._continuation()
        return self._decoded(block)

    def _decoded(self, block: bytes) -> dict[bytes, bytes]:
        """A header block's headers. Triton's answers repeat the same few blocks, which
        only refer to its dynamic table: a block that left the table as it found it is
        decoded once for that table (pure-Python hpack costs ~4 us a block)."""
        key = (block, self._table_version)
        headers = self._decoded_blocks.get(key)
        if headers is None:
            table = self._decoder.header_table
            before = (table.maxsize, tuple(table.dynamic_entries))
            headers = dict(self._decoder.decode(block, raw=True))
            if (table.maxsize, tuple(table.dynamic_entries)) != before:
                self._table_version += 1  # what was decoded for the old table is stale
                self._decoded_blocks.clear()
            elif len(self._decoded_blocks) < DECODED_BLOCKS:
                self._decoded_blocks[key] = headers
        return headers

    def _continuation(self) -> bytes:
        block, flags = b"", 0
        while not flags & END_HEADERS:
            received = self._next_frame(wait=True)
            assert received is not None
            kind, flags, _, more = received
            if kind != Frame.CONTINUATION:
                raise ConnectionError("HTTP/2: a header block was cut by another frame")
            block += more
        return block

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
            self.out.append(frame(Frame.WINDOW_UPDATE, 0, 0, grant))
            self._received = 0

    def _next_frame(self, wait: bool = False) -> tuple[int, int, int, bytes] | None:
        """The next whole frame: read from the socket while the buffer holds none (on a
        non-blocking socket: None once nothing more has arrived, unless `wait`)."""
        buffer = self.buffer
        while True:
            if len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) >= 9 + length:
                    head = buffer[:9]
                    payload = bytes(buffer[9 : 9 + length])
                    del buffer[: 9 + length]
                    stream = int.from_bytes(head[5:9], "big") & MAX_STREAM_ID
                    return head[3], head[4], stream, payload
            if not self.receive():
                if not wait:
                    return None
                self.wait_readable()


def _unpadded(flags: int, payload: bytes) -> bytes:
    if flags & PADDED:
        return payload[1 : len(payload) - payload[0]]
    return payload
