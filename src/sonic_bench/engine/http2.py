"""The smallest HTTP/2 client a unary gRPC call needs, on one socket per worker.

grpc's Python API spends ~170 us of CPU and ~240 us of latency around every call (its
call objects, completion queues and threads); on shared-memory requests, which the server
answers in a fraction of a millisecond, that is what a Python client measures instead
of the server. A unary call is one HEADERS frame and a few DATA frames each way, so this
client writes and reads those frames itself, at a fraction of the CPU h2's state machine
(the kept alternative) costs per call (`bench/h2_client_cost.py`, bench/README.md): h2
plays the server in the conformance suite instead (`tests/test_conformance_http2.py`),
which holds this client to RFC 9113.

What it does of HTTP/2: the preface and SETTINGS (validated, acknowledged both ways),
flow control both ways (the peer's windows before sending DATA, windows that overflow or
grow by nothing refused; a window of 2^31-1 for what it receives, topped up on the
connection), frames held to the size it advertises, header blocks split into
CONTINUATION frames by the peer's frame size and held to both sides' header list sizes,
PING answered, RST_STREAM failing its stream only, GOAWAY draining the connection: a
request the server says it did not process (a stream above GOAWAY's last, or refused) is
sent once more on a new connection, counted once. A broken peer is a connection error:
GOAWAY with its code, the connection closed, the request failed with what was wrong.
Header blocks are (de)compressed by `hpack`. No server push, no priorities, no concurrent
streams: one connection, one request in flight. Blocking (`request`, for a Locust user or
a simple loop) or driven step by step from an event loop (`begin`, `flush`, `advance` on
a non-blocking socket: the sweep's drivers).
"""

from __future__ import annotations

import contextlib
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
DEFAULT_MAX_FRAME = 16_384  # what we receive: we never advertise more
LARGEST_FRAME = 2**24 - 1
MAX_STREAM_ID = 2**31 - 1
DECODED_BLOCKS = 64
# The header list we accept (SETTINGS_MAX_HEADER_LIST_SIZE): Triton's answers are a few
# hundred bytes; a megabyte of headers is a broken or hostile peer.
MAX_HEADER_LIST = 1 << 20


class Frame(IntEnum):
    DATA = 0
    HEADERS = 1
    PRIORITY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PUSH_PROMISE = 5
    PING = 6
    GOAWAY = 7
    WINDOW_UPDATE = 8
    CONTINUATION = 9


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY = 0x20
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
WINDOW_FRAMES = frozenset((Frame.WINDOW_UPDATE, Frame.SETTINGS))


class StreamReset(Exception):
    """The peer reset the stream (RST_STREAM): that request failed, the connection
    lives."""


class ProtocolViolation(ConnectionError):
    """The peer broke HTTP/2: the connection is closed (after a GOAWAY saying why)."""

    def __init__(self, code: ErrorCode, what: str):
        super().__init__(f"HTTP/2 {code.name}: {what}")
        self.code = code


class Unprocessed(Exception):
    """The server says it did not process the stream (GOAWAY below it, REFUSED_STREAM):
    safe to send again on a new connection (RFC 9113 section 8.7)."""


def _frame_head(kind: Frame, flags: int, stream: int, length: int) -> bytes:
    return struct.pack(">I", length)[1:] + struct.pack(">BBI", kind, flags, stream)


def frame(kind: Frame, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _frame_head(kind, flags, stream, len(payload)) + payload


@dataclass(frozen=True)
class HeaderBlock:
    """A request's header block, encoded once, and its header list size as RFC 9113
    section 6.5.2 counts it (names, values and 32 bytes a field)."""

    block: bytes
    list_size: int


@dataclass(frozen=True)
class Response:
    headers: dict[bytes, bytes]  # the response's headers and trailers together
    data: bytes


@dataclass
class _Stream:
    """The one stream in flight: its request, how much of its body went, what the peer
    lets us send, what it has answered."""

    id: int
    send_window: int
    headers: HeaderBlock
    body: memoryview
    sent: int = 0
    answer: dict[bytes, bytes] = field(default_factory=dict)
    data: list[bytes] = field(default_factory=list)
    block: bytes | None = None  # a header block awaiting its CONTINUATION frames
    block_ends: bool = False  # ... and whether its HEADERS frame ended the stream
    done: bool = False
    retried: bool = False


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
        self.retried = 0  # requests sent again after the server had not processed them
        self._idle_error: ProtocolViolation | None = None
        self._reset_state()
        self._stream: _Stream | None = None

    def _reset_state(self) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
        self._decoded_blocks: dict[tuple[bytes, int], dict[bytes, bytes]] = {}
        self._table_version = 0  # counts the decodes that changed the dynamic table
        self._next_stream = 1
        self._send_window = DEFAULT_WINDOW  # the connection's, granted by the peer
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._peer_max_header_list: int | None = None
        self._received = 0  # DATA bytes since our last connection WINDOW_UPDATE
        self._going_away = False  # the peer sent GOAWAY: no new stream here
        # DATA waits for the server's first SETTINGS: a server that starts with a small
        # window (allowed) may hold to it before our acknowledgement (h2 does).
        self._settings_received = False

    @staticmethod
    def encode_headers(headers: Sequence[tuple[str, str]]) -> HeaderBlock:
        """A header block that needs no shared state (no dynamic table): built once."""
        encoder = hpack.Encoder()
        encoder.header_table_size = 0
        fields = [(k.encode(), v.encode()) for k, v in headers]
        block = encoder.encode(fields, huffman=False)
        return HeaderBlock(block, sum(len(k) + len(v) + 32 for k, v in fields))

    def request(self, headers: HeaderBlock, body: bytes | memoryview) -> Response:
        """One stream: the header block, then the body (not empty) as DATA; blocks."""
        self.begin(headers, body)
        return self.finish(self.advance)

    def begin(self, headers: HeaderBlock, body: bytes | memoryview) -> None:
        """Open the next stream (connecting first if needed) and queue what it may send."""
        try:
            if self._idle_error is not None:
                error, self._idle_error = self._idle_error, None
                raise error
            if self.connected:  # a GOAWAY or SETTINGS that came between requests
                if self.blocking:
                    self._take_idle()
                elif self.buffer:  # an event loop reads idle sockets (on_idle_readable)
                    self._take_buffered()
            if not self.connected or self._going_away or self._next_stream > MAX_STREAM_ID:
                self._connect()
            self._open_stream(headers, memoryview(body))
        except Exception:
            self.close()
            raise

    def _open_stream(self, headers: HeaderBlock, body: memoryview) -> None:
        limit = self._peer_max_header_list
        if limit is not None and headers.list_size > limit:
            raise ConnectionError(
                f"the request's headers are {headers.list_size} bytes and the server takes "
                f"at most {limit} (its SETTINGS_MAX_HEADER_LIST_SIZE): send fewer or "
                "shorter --header values"
            )
        stream = _Stream(self._next_stream, self._peer_initial_window, headers, body)
        self._next_stream += 2
        self._stream = stream
        self._queue_headers(stream)
        self._queue_data(stream)

    def advance(self) -> Response | None:
        """Read what has arrived (blocking: wait for something) and process it: the answer
        once the stream has ended, else None."""
        stream = self._stream
        try:
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
            self._take_buffered()
            return Response(stream.answer, b"".join(stream.data))
        except Unprocessed:
            if stream.retried:
                self.close()
                raise ConnectionError(
                    "the server refused the request on two connections in a row (GOAWAY "
                    "or REFUSED_STREAM): it is draining, or overloaded"
                ) from None
            return self._again(stream)
        except StreamReset:
            self._stream = None
            if stream.sent < len(stream.body) or self.out:
                self.close()  # frames of the reset stream may be half written
            raise
        except ProtocolViolation as e:
            self._go_away(e.code)
            raise
        except Exception:
            self.close()
            raise

    def _again(self, stream: _Stream) -> Response | None:
        """The same request on a new connection, once: the server did not process it."""
        self.retried += 1
        self.close()
        self._connect()
        self._open_stream(stream.headers, stream.body)
        assert self._stream is not None
        self._stream.retried = True
        self.flush()
        return None

    def close(self) -> None:
        super().close()
        self._stream = None

    def on_idle_readable(self) -> bool:
        """The server spoke between requests (an event loop saw the socket readable):
        take it in. False once the connection is gone (closed, or going away)."""
        try:
            self._take_idle()
        except ProtocolViolation as e:
            self._go_away(e.code)
            self._idle_error = e  # the next request fails with it: the server is broken
        except Exception:
            self.close()
        return self.connected and not self._going_away

    def _take_idle(self) -> None:
        """What arrived between requests, without waiting: SETTINGS and PING answered,
        GOAWAY heeded (the next request goes on a new connection), a close seen."""
        if self.read_idle():
            self._take_buffered()
            if self.out:
                self.flush()

    def _take_buffered(self) -> None:
        """Process the whole frames already read (after an answer, or between requests)."""
        while self.connected and (received := self._next_frame(read=False)) is not None:
            self._process(received, None)

    def _stop_sending(self, stream: _Stream) -> None:
        """Answered before the whole request went (an early error): we stop sending, and
        say so, so that the server does not wait for the rest. A frame already half
        written cannot be taken back: then the connection goes (the next request opens
        a fresh one)."""
        if self.out:
            self.close()
            return
        self.out = [frame(Frame.RST_STREAM, 0, stream.id, struct.pack(">I", ErrorCode.CANCEL))]
        self.flush()

    def _go_away(self, code: ErrorCode) -> None:
        """A connection error: tell the peer why (best effort), then close."""
        if self.socket is not None:
            with contextlib.suppress(Exception):
                self.out = [frame(Frame.GOAWAY, 0, 0, struct.pack(">II", 0, code))]
                self.flush()
        self.close()

    def _connect(self) -> None:
        self.open()
        self._reset_state()
        settings = struct.pack(
            ">HIHIHI",
            SETTINGS_ENABLE_PUSH,
            0,
            SETTINGS_INITIAL_WINDOW_SIZE,
            MAX_WINDOW,
            SETTINGS_MAX_HEADER_LIST_SIZE,
            MAX_HEADER_LIST,
        )
        grow = struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW)
        self.out.append(
            PREFACE + frame(Frame.SETTINGS, 0, 0, settings) + frame(Frame.WINDOW_UPDATE, 0, 0, grow)
        )

    def established(self) -> None:
        if self.tls is not None and self.socket.selected_alpn_protocol() != "h2":
            self.close()
            raise ConnectionError("the server did not agree to HTTP/2 over TLS (ALPN)")

    def _queue_headers(self, stream: _Stream) -> None:
        """HEADERS, and CONTINUATION frames for what the peer's frame size leaves over."""
        block, size = stream.headers.block, self._peer_max_frame
        if len(block) <= size:
            self.out.append(frame(Frame.HEADERS, END_HEADERS, stream.id, block))
            return
        self.out.append(frame(Frame.HEADERS, 0, stream.id, block[:size]))
        for start in range(size, len(block), size):
            last = start + size >= len(block)
            piece = block[start : start + size]
            self.out.append(frame(Frame.CONTINUATION, END_HEADERS if last else 0, stream.id, piece))

    def _queue_data(self, stream: _Stream) -> None:
        """DATA frames for as much of the body as both windows allow, END_STREAM on its
        last."""
        body = stream.body
        allowed = min(self._send_window, stream.send_window, len(body) - stream.sent)
        if allowed <= 0 or stream.done or not self._settings_received:
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

    def _process(self, received: tuple[int, int, int, bytes], stream: _Stream | None) -> None:
        """One frame. `stream`: the one in flight (None between requests)."""
        kind, flags, on, payload = received
        if stream is not None and stream.block is not None and kind != Frame.CONTINUATION:
            raise ProtocolViolation(
                ErrorCode.PROTOCOL_ERROR, f"a header block was cut by a frame of type {kind}"
            )
        if kind == Frame.DATA:
            self._on_data(flags, on, payload, stream)
        elif kind == Frame.HEADERS:
            self._on_headers(flags, on, payload, stream)
        elif kind == Frame.CONTINUATION:
            self._on_continuation(flags, on, payload, stream)
        elif kind == Frame.SETTINGS:
            self._on_settings(flags, on, payload, stream)
        elif kind == Frame.PING:
            if on != 0 or len(payload) != 8:
                raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "a PING not of 8 bytes on 0")
            if not flags & ACK:
                self.out.append(frame(Frame.PING, ACK, 0, payload))
        elif kind == Frame.WINDOW_UPDATE:
            self._on_window_update(on, payload, stream)
        elif kind == Frame.RST_STREAM:
            self._on_reset(on, payload, stream)
        elif kind == Frame.GOAWAY:
            self._on_goaway(on, payload, stream)
        elif kind == Frame.PUSH_PROMISE:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "a PUSH_PROMISE, with push off")
        # PRIORITY, and frame types this client does not know, are ignored (section 5.5).

    def _on_data(self, flags: int, on: int, payload: bytes, stream: _Stream | None) -> None:
        if on == 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        self._count_received(len(payload))  # flow control counts every stream's DATA
        if stream is not None and on == stream.id:
            if not stream.answer:
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "DATA before the HEADERS")
            stream.data.append(_unpadded(flags, payload))
            stream.done = bool(flags & END_STREAM)

    def _on_headers(self, flags: int, on: int, payload: bytes, stream: _Stream | None) -> None:
        if on == 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = _unpadded(flags, payload)
        if flags & PRIORITY:
            block = block[5:]
        if stream is None or on != stream.id:
            if on % 2 == 0 or on >= self._next_stream:
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {on}")
            if flags & END_HEADERS:  # a closed stream's: decoded all the same (the table)
                self._decoded(block)
            return
        if not flags & END_HEADERS:
            stream.block, stream.block_ends = block, bool(flags & END_STREAM)
            return
        self._on_header_block(block, bool(flags & END_STREAM), stream)

    def _on_continuation(self, flags: int, on: int, payload: bytes, stream: _Stream | None) -> None:
        if stream is None or stream.block is None or on != stream.id:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "a CONTINUATION without HEADERS")
        stream.block += payload
        if len(stream.block) > MAX_HEADER_LIST:
            raise ProtocolViolation(ErrorCode.ENHANCE_YOUR_CALM, "a header block without end")
        if flags & END_HEADERS:
            block, stream.block = stream.block, None
            self._on_header_block(block, stream.block_ends, stream)

    def _on_header_block(self, block: bytes, ends: bool, stream: _Stream) -> None:
        stream.answer.update(self._decoded(block))
        stream.done = ends

    def _on_settings(self, flags: int, on: int, payload: bytes, stream: _Stream | None) -> None:
        if on != 0:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, f"SETTINGS on stream {on}")
        if flags & ACK:
            if payload:
                raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ProtocolViolation(
                ErrorCode.FRAME_SIZE_ERROR, f"SETTINGS of {len(payload)} bytes (not 6 each)"
            )
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack(">HI", payload[offset : offset + 6])
            self._apply_setting(key, value, stream)
        self._settings_received = True
        self.out.append(frame(Frame.SETTINGS, ACK, 0))

    def _apply_setting(self, key: int, value: int, stream: _Stream | None) -> None:
        if key == SETTINGS_INITIAL_WINDOW_SIZE:
            if value > MAX_WINDOW:
                raise ProtocolViolation(
                    ErrorCode.FLOW_CONTROL_ERROR, f"SETTINGS_INITIAL_WINDOW_SIZE {value}"
                )
            if stream is not None:
                stream.send_window += value - self._peer_initial_window
                if stream.send_window > MAX_WINDOW:
                    raise ProtocolViolation(
                        ErrorCode.FLOW_CONTROL_ERROR, "a stream window over 2^31-1"
                    )
            self._peer_initial_window = value
        elif key == SETTINGS_MAX_FRAME_SIZE:
            if not DEFAULT_MAX_FRAME <= value <= LARGEST_FRAME:
                raise ProtocolViolation(
                    ErrorCode.PROTOCOL_ERROR,
                    f"SETTINGS_MAX_FRAME_SIZE {value} (RFC 9113 allows 16,384 to 16,777,215)",
                )
            self._peer_max_frame = value
        elif key == SETTINGS_ENABLE_PUSH:
            if value > 1 or value == 1:  # a server may send only 0 (section 6.5.2)
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, f"SETTINGS_ENABLE_PUSH {value}")
        elif key == SETTINGS_MAX_HEADER_LIST_SIZE:
            self._peer_max_header_list = value
        # HEADER_TABLE_SIZE: our blocks use no dynamic table; unknown settings ignored.

    def _on_window_update(self, on: int, payload: bytes, stream: _Stream | None) -> None:
        if len(payload) != 4:
            raise ProtocolViolation(ErrorCode.FRAME_SIZE_ERROR, "a WINDOW_UPDATE not of 4 bytes")
        increment = struct.unpack(">I", payload)[0] & MAX_WINDOW
        if on == 0:
            if increment == 0:
                raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolViolation(
                    ErrorCode.FLOW_CONTROL_ERROR, "the connection window over 2^31-1"
                )
        elif stream is not None and on == stream.id:
            if increment == 0:
                raise StreamReset("HTTP/2 PROTOCOL_ERROR: the server grew the stream window by 0")
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                raise StreamReset("HTTP/2 FLOW_CONTROL_ERROR: a stream window over 2^31-1")

    def _on_reset(self, on: int, payload: bytes, stream: _Stream | None) -> None:
        if on == 0 or len(payload) != 4:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "a RST_STREAM on 0 or not 4 bytes")
        if stream is None or on != stream.id:
            return  # an earlier stream's, already done with
        code = struct.unpack(">I", payload)[0]
        if code == ErrorCode.REFUSED_STREAM:
            raise Unprocessed()
        raise StreamReset(f"HTTP/2 stream reset by the server ({_code_name(code)})")

    def _on_goaway(self, on: int, payload: bytes, stream: _Stream | None) -> None:
        if on != 0 or len(payload) < 8:
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "a GOAWAY on a stream or short")
        last = struct.unpack(">I", payload[:4])[0]
        self._going_away = True  # finish what it will process, then a new connection
        if stream is not None and (last & MAX_STREAM_ID) < stream.id:
            raise Unprocessed()
        # A stream at or below `last` may still be answered: it is waited for (the
        # connection closing first fails it), whatever the error code says of the others.

    def _decoded(self, block: bytes) -> dict[bytes, bytes]:
        """A header block's headers. Triton's answers repeat the same few blocks, which
        only refer to its dynamic table: a block that left the table as it found it is
        decoded once for that table (pure-Python hpack costs ~4 us a block)."""
        key = (block, self._table_version)
        headers = self._decoded_blocks.get(key)
        if headers is None:
            table = self._decoder.header_table
            before = (table.maxsize, tuple(table.dynamic_entries))
            try:
                headers = dict(self._decoder.decode(block, raw=True))
            except hpack.HPACKError as e:
                raise ProtocolViolation(ErrorCode.COMPRESSION_ERROR, str(e)) from None
            if (table.maxsize, tuple(table.dynamic_entries)) != before:
                self._table_version += 1  # what was decoded for the old table is stale
                self._decoded_blocks.clear()
            elif len(self._decoded_blocks) < DECODED_BLOCKS:
                self._decoded_blocks[key] = headers
        return headers

    def _count_received(self, size: int) -> None:
        self._received += size
        if self._received > MAX_WINDOW:
            raise ProtocolViolation(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond our window")
        if self._received > MAX_WINDOW // 2:
            grant = struct.pack(">I", self._received)
            self.out.append(frame(Frame.WINDOW_UPDATE, 0, 0, grant))
            self._received = 0

    def _next_frame(self, read: bool = True) -> tuple[int, int, int, bytes] | None:
        """The next whole frame: read from the socket while the buffer holds none (on a
        non-blocking socket: None once nothing more has arrived; `read=False`: only what
        the buffer holds). A frame over the size we accept is refused before it is read."""
        buffer = self.buffer
        while True:
            if len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if length > DEFAULT_MAX_FRAME:
                    raise ProtocolViolation(
                        ErrorCode.FRAME_SIZE_ERROR,
                        f"a frame of {length} bytes, over the {DEFAULT_MAX_FRAME} we accept",
                    )
                if len(buffer) >= 9 + length:
                    head = buffer[:9]
                    payload = bytes(buffer[9 : 9 + length])
                    del buffer[: 9 + length]
                    stream = int.from_bytes(head[5:9], "big") & MAX_STREAM_ID
                    return head[3], head[4], stream, payload
            if not read or not self.receive():
                return None


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"


def _unpadded(flags: int, payload: bytes) -> bytes:
    if flags & PADDED:
        if not payload or payload[0] >= len(payload):
            raise ProtocolViolation(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame")
        return payload[1 : len(payload) - payload[0]]
    return payload
