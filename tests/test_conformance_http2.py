"""The engine's HTTP/2 and gRPC held to RFC 9113 and gRPC's wire protocol: h2 plays the
server (`peers.py`), scripted per case; raw frames where a broken peer must be played.

Every case says what a user sees: a request that fails with one line naming what the
server did, a connection error answered with GOAWAY and its code, or (for what the
protocols allow) an answer counted once. None may hang or count wrongly."""

from __future__ import annotations

import struct
import threading
import time

import h2.events
import hpack
import numpy as np
import pytest
from peers import H2, MODEL, Link, Peer, batches, client, grpc_answer, h2_serving

from sonic_bench.engine.client import EncodedBatches, InferClient, InferError, is_rejection
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.engine.http2 import MAX_WINDOW
from sonic_bench.engine.loop import ClosedLoop
from sonic_bench.measure.records import Clock
from sonic_bench.model.emtrackmichel import PATCH_SHAPE

pytestmark = pytest.mark.timeout(60)
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = (
    0, 1, 3, 4, 5, 6, 7, 8,
)  # fmt: skip
CONTINUATION = 9
END_STREAM, END_HEADERS, PADDED = 0x1, 0x4, 0x8


def infer_once(url: str, **endpoint) -> int:
    c = client(url, **endpoint)
    try:
        return c.infer(0)
    finally:
        c.close()


def run_loop(url: str, slots: int, until, protocol: str = "grpc", **endpoint) -> list:
    """A closed loop of `slots` connections until `until(records)`; its records."""
    endpoint = Endpoint(url, protocol, **endpoint)
    make = lambda: InferClient(endpoint, MODEL, batches())  # noqa: E731
    loop = ClosedLoop(make, slots, Clock())
    loop.start()
    deadline = time.monotonic() + 30
    try:
        while not until(loop.log.records()) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition, not timing one
    finally:
        loop.stop()
    assert loop.failure is None, loop.failure
    return loop.log.records()


# --- a peer that breaks the protocol: a connection error, GOAWAY with its code ------------


def _settings(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(">HI", key, value) for key, value in pairs)


def _headers_block() -> bytes:
    encoder = hpack.Encoder()
    return encoder.encode([(b":status", b"200"), (b"content-type", b"application/grpc")])


VIOLATIONS = {
    "initial window over 2^31-1": (
        (SETTINGS, 0, 0, _settings((0x4, 2**31))),
        "FLOW_CONTROL_ERROR",
        "FLOW_CONTROL_ERROR",
    ),
    "max frame size 0": (
        (SETTINGS, 0, 0, _settings((0x5, 0))),
        "SETTINGS_MAX_FRAME_SIZE 0",
        "PROTOCOL_ERROR",
    ),
    "max frame size 2^24": (
        (SETTINGS, 0, 0, _settings((0x5, 2**24))),
        "SETTINGS_MAX_FRAME_SIZE",
        "PROTOCOL_ERROR",
    ),
    "settings not 6 bytes each": (
        (SETTINGS, 0, 0, b"\x00\x04\x00\x00\xff"),
        "not 6 each",
        "FRAME_SIZE_ERROR",
    ),
    "settings on a stream": ((SETTINGS, 0, 1, b""), "SETTINGS on stream 1", "PROTOCOL_ERROR"),
    "server enables push": (
        (SETTINGS, 0, 0, _settings((0x2, 1))),
        "SETTINGS_ENABLE_PUSH 1",
        "PROTOCOL_ERROR",
    ),
    "window update of 0": (
        (WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)),
        "WINDOW_UPDATE of 0",
        "PROTOCOL_ERROR",
    ),
    "window over 2^31-1": (
        (WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW)),
        r"over 2\^31-1",
        "FLOW_CONTROL_ERROR",
    ),
    "a frame over the 16 KiB advertised": (
        (DATA, 0, 1, bytes(20_000)),
        "over the 16384 we accept",
        "FRAME_SIZE_ERROR",
    ),
    "push promise": ((PUSH_PROMISE, END_HEADERS, 1, bytes(8)), "PUSH_PROMISE", "PROTOCOL_ERROR"),
    "ping not 8 bytes": ((PING, 0, 0, bytes(7)), "PING", "FRAME_SIZE_ERROR"),
    "broken hpack": ((HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"), "HTTP/2", "COMPRESSION_ERROR"),
    "data on stream 0": ((DATA, 0, 0, b"x"), "DATA on stream 0", "PROTOCOL_ERROR"),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_a_peer_breaking_http2_fails_the_request_and_is_told_why(case):
    """The server's frame arrives while the answer is awaited: the request fails with what
    was wrong, the client's GOAWAY carries RFC 9113's code, and (the old MAX_FRAME_SIZE 0
    case) nothing loops or grows."""
    raw, message, code = VIOLATIONS[case]

    def serve(link: Link) -> None:
        peer = H2(link)
        peer.request()
        peer.raw(*raw)
        while events := peer.events():
            for event in events:
                if isinstance(event, h2.events.ConnectionTerminated):
                    link.peer.note(f"GOAWAY {event.error_code.name}")
                    return

    with Peer(serve) as peer:
        with pytest.raises(InferError, match=message):
            infer_once(peer.url)
        deadline = time.monotonic() + 5
        while not peer.events and time.monotonic() < deadline:
            time.sleep(0.01)
    assert peer.events == [f"GOAWAY {code}"]


def test_padding_as_long_as_the_frame_is_a_protocol_error():
    def serve(link: Link) -> None:
        peer = H2(link)
        stream, _ = peer.request()
        peer.raw(HEADERS, END_HEADERS, stream, _headers_block())
        peer.raw(DATA, PADDED, stream, bytes([200]) + bytes(10))
        peer.events()

    with Peer(serve) as peer, pytest.raises(InferError, match="padding"):
        infer_once(peer.url)


def test_a_header_block_cut_by_another_frame_is_a_protocol_error():
    def serve(link: Link) -> None:
        peer = H2(link)
        stream, _ = peer.request()
        block = _headers_block()
        peer.raw(HEADERS, 0, stream, block[:2])
        peer.raw(PING, 0, 0, bytes(8))
        peer.events()

    with Peer(serve) as peer, pytest.raises(InferError, match="cut by a frame"):
        infer_once(peer.url)


# --- headers both ways ------------------------------------------------------------------


def test_a_header_block_over_the_peers_frame_size_goes_in_continuation_frames():
    """40 KB of --header is three frames at the peer's 16 KiB: h2 reassembles them."""
    seen = []

    def serve(link: Link) -> None:
        peer = H2(link)
        while (got := peer.request()) is not None:
            stream, body = got
            seen.append(len(body))
            peer.answer(stream, grpc_answer(body))

    with Peer(serve) as peer:
        assert infer_once(peer.url, headers={"x-big": "a" * 40_000}) == 2
    assert seen == [len(batches().serialized(MODEL)[0])]


def test_headers_over_the_peers_header_list_size_are_one_clear_error():
    """Once the server's SETTINGS_MAX_HEADER_LIST_SIZE is known, a request whose headers
    exceed it is not sent: the error names the setting and --header."""
    with Peer(h2_serving(settings={h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1000})) as peer:
        c = client(peer.url, headers={"x-token": "t" * 2000})
        try:
            c.infer(0)  # sent before the server's SETTINGS came: it takes it
            with pytest.raises(InferError, match=r"SETTINGS_MAX_HEADER_LIST_SIZE.*--header"):
                c.infer(0)
        finally:
            c.close()
    assert peer.processed == 1


def test_an_answer_whose_header_block_waits_for_its_continuation_stalls_only_its_slot():
    """One connection's HEADERS without END_HEADERS, its CONTINUATION held back: the event
    loop serves the other connection meanwhile, then finishes the first."""
    release = threading.Event()

    def serve(link: Link) -> None:
        if link.number != 0:
            return h2_serving()(link)
        peer = H2(link)
        stream, body = peer.request()
        encoder = hpack.Encoder()
        block = encoder.encode([(b":status", b"200"), (b"content-type", b"application/grpc")])
        peer.raw(HEADERS, 0, stream, block[:3])
        release.wait(20)
        peer.raw(CONTINUATION, END_HEADERS, stream, block[3:])
        peer.raw(DATA, 0, stream, grpc_answer(body))
        trailers = encoder.encode([(b"grpc-status", b"0")])
        peer.raw(HEADERS, END_HEADERS | END_STREAM, stream, trailers)
        link.peer.served()
        peer.raw(GOAWAY, 0, 0, struct.pack(">II", stream, 0))  # the rest on new connections
        while peer.events():
            pass

    def until(records) -> bool:
        if len(records) >= 20:
            release.set()
        workers = {r.worker for r in records}
        return len(workers) == 2

    with Peer(serve) as peer:
        records = run_loop(peer.url, 2, until)
    assert all(r.ok for r in records), [r.error for r in records if not r.ok]
    held = max(records, key=lambda r: r.t_recv - r.t_send)
    meanwhile = [r for r in records if r is not held and held.t_send < r.t_recv < held.t_recv]
    assert len(meanwhile) >= 20  # the other slot went on while this one waited


# --- flow control -------------------------------------------------------------------------


def _counting(settings: dict, during=None):
    """Serves requests, reading what the client sends under its windows; `during(peer)` on
    the first DATA of each request."""

    def serve(link: Link) -> None:
        peer = H2(link, settings)
        while True:
            events = peer.events()
            if not events:
                return
            for event in events:
                if isinstance(event, h2.events.DataReceived) and during is not None:
                    during(peer)
                if isinstance(event, h2.events.StreamEnded):
                    body = bytes(peer.bodies.pop(event.stream_id))
                    peer.answer(event.stream_id, grpc_answer(body))
                    link.peer.served()

    return serve


def test_a_request_goes_whole_through_windows_of_16_bytes():
    """73 KB under a stream window of 16 bytes and the connection's 65,535: every DATA
    frame within what the server granted (h2 would call any excess a FLOW_CONTROL_ERROR)."""
    eight = EncodedBatches([np.zeros((8, *PATCH_SHAPE), np.float32)])
    with Peer(_counting({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})) as peer:
        c = InferClient(Endpoint(peer.url), MODEL, eight)
        try:
            answered = c.infer(0)
        finally:
            c.close()
        assert peer.errors == []
        assert answered == 8
    assert peer.processed == 1


@pytest.mark.parametrize("window", [0, 100, 1_000_000])
def test_settings_changed_mid_stream_are_honoured(window):
    """The stream window changed (to nothing, a little, a lot) while the body is on its
    way: the client sends within it and the request completes."""
    changed = []

    def during(peer: H2) -> None:
        if not changed:
            changed.append(True)
            peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            peer.flush()
            if window == 0:  # then open it again, on the stream and beyond
                peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65_535})
                peer.flush()

    with Peer(_counting({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4096}, during)) as peer:
        assert infer_once(peer.url) == 2
    assert changed


# --- streams reset, connections drained --------------------------------------------------


def test_a_reset_stream_fails_that_request_and_the_connection_lives():
    def serve(link: Link) -> None:
        peer = H2(link)
        stream, _ = peer.request()
        peer.conn.reset_stream(stream, h2.errors.ErrorCodes.INTERNAL_ERROR)
        peer.flush()
        while peer.serve_one() is not None:
            pass

    with Peer(serve) as peer:
        c = client(peer.url)
        try:
            with pytest.raises(InferError, match=r"stream reset by the server \(INTERNAL_ERROR"):
                c.infer(0)
            assert c.infer(0) == 2
            assert c._raw.connection.opened == 1
        finally:
            c.close()
    assert peer.connections == 1


def test_a_refused_stream_goes_again_on_a_new_connection_counted_once():
    def serve(link: Link) -> None:
        peer = H2(link)
        if link.number == 0:
            stream, _ = peer.request()
            peer.conn.reset_stream(stream, h2.errors.ErrorCodes.REFUSED_STREAM)
            peer.flush()
            peer.events()
            return
        while peer.serve_one() is not None:
            pass

    with Peer(serve) as peer:
        c = client(peer.url)
        try:
            assert c.infer(0) == 2
            assert c.retried == 1
        finally:
            c.close()
    assert (peer.connections, peer.processed) == (2, 1)


def test_a_server_refusing_every_stream_is_one_clear_error():
    def serve(link: Link) -> None:
        peer = H2(link)
        stream, _ = peer.request()
        peer.conn.reset_stream(stream, h2.errors.ErrorCodes.REFUSED_STREAM)
        peer.flush()
        peer.events()

    with Peer(serve) as peer, pytest.raises(InferError, match="two connections in a row"):
        infer_once(peer.url)


def _goaway_after_each_answer(link: Link) -> None:
    """What a draining deployment does: answer, then GOAWAY (NO_ERROR, last stream = the
    one just answered), then wait for the client to leave."""
    peer = H2(link)
    stream = peer.serve_one()
    if stream is None:
        return
    peer.conn.close_connection(last_stream_id=stream)
    peer.flush()
    while peer.events():
        pass


def test_goaway_after_each_answer_fails_nothing_blocking():
    with Peer(_goaway_after_each_answer) as peer:
        c = client(peer.url)
        try:
            assert [c.infer(0) for _ in range(30)] == [2] * 30
        finally:
            c.close()
    assert (peer.processed, peer.connections) == (30, 30)


def test_goaway_after_each_answer_fails_nothing_in_the_event_loop():
    """The issue's case: 100 of 201 requests failed. Now each request is answered once, on
    a connection of its own, and the peer's count equals the client's."""
    with Peer(_goaway_after_each_answer) as peer:
        records = run_loop(peer.url, 2, lambda records: len(records) >= 200)
        processed = peer.processed
    assert all(r.ok for r in records), {r.error for r in records if not r.ok}
    assert processed == len(records)


def test_goaway_that_crosses_the_next_request_sends_it_again_counted_once():
    """The next request was already on its way when GOAWAY (last = the one before) came:
    the server did not process it (RFC 9113 section 6.8), so it goes again, once."""

    def serve(link: Link) -> None:
        peer = H2(link)
        first = peer.serve_one()
        if first is None or peer.request() is None:
            return
        peer.conn.close_connection(last_stream_id=first)
        peer.flush()
        while peer.events():
            pass

    with Peer(serve) as peer:
        c = client(peer.url)
        try:
            assert [c.infer(0) for _ in range(10)] == [2] * 10
            retried = c.retried
        finally:
            c.close()
    assert retried >= 1
    assert peer.processed == 10


# --- gRPC on the wire ------------------------------------------------------------------------


def _answering(headers, data: bytes | None = None, trailers=None):
    def serve(link: Link) -> None:
        peer = H2(link)
        stream, _ = peer.request()
        peer.conn.send_headers(stream, headers, end_stream=data is None and trailers is None)
        if data is not None:
            peer.conn.send_data(stream, data, end_stream=trailers is None)
        if trailers is not None:
            peer.conn.send_headers(stream, trailers, end_stream=True)
        peer.flush()
        peer.events()

    return serve


GRPC = [(b":status", b"200"), (b"content-type", b"application/grpc")]
ANSWER = grpc_answer(batches().serialized(MODEL)[0])
OK = [(b"grpc-status", b"0")]
WIRE = {
    "trailers-only error": (
        _answering([*GRPC, (b"grpc-status", b"8"), (b"grpc-message", b"queue%20full")]),
        "RESOURCE_EXHAUSTED: queue full",
    ),
    "compressed message": (
        _answering(GRPC, b"\x01" + ANSWER[1:], OK),
        r"compressed \(grpc-encoding \?\)",
    ),
    "a second message": (_answering(GRPC, ANSWER + ANSWER, OK), "bytes after its message"),
    "a message cut short": (_answering(GRPC, ANSWER[:-10], OK), "cut short"),
    "a gateway's 401": (
        _answering([(b":status", b"401"), (b"content-type", b"text/plain")], b"no token"),
        "UNAUTHENTICATED: HTTP 401 .*no token",
    ),
    "a gateway's 503": (
        _answering([(b":status", b"503"), (b"content-type", b"text/html")], b"<html>busy"),
        "UNAVAILABLE: HTTP 503",
    ),
    "not gRPC at all": (
        _answering([(b":status", b"200"), (b"content-type", b"text/html")], b"<html>"),
        "not gRPC",
    ),
}


@pytest.mark.parametrize("case", sorted(WIRE))
def test_grpc_answers_are_held_to_the_wire_format(case):
    serve, message = WIRE[case]
    with Peer(serve) as peer, pytest.raises(InferError, match=message) as failed:
        infer_once(peer.url)
    refused = ("trailers-only error", "a gateway's 401", "a gateway's 503")
    assert is_rejection(str(failed.value)) == (case in refused)


# --- slow peers, deadlines, addresses --------------------------------------------------------


def _trickling(pause_s: float):
    def serve(link: Link) -> None:
        peer = H2(link)
        while (got := peer.request()) is not None:
            stream, body = got
            peer.conn.send_headers(stream, GRPC)
            peer.conn.send_data(stream, grpc_answer(body))
            peer.conn.send_headers(stream, OK, end_stream=True)
            wire = peer.conn.data_to_send()
            for start in range(0, len(wire), 4):
                if link.peer.stopping.wait(pause_s):
                    return
                link.send(wire[start : start + 4])
            link.peer.served()

    return serve


def test_timeout_bounds_a_request_the_server_trickles():
    with Peer(_trickling(0.05)) as peer:
        started = time.monotonic()
        with pytest.raises(InferError, match=r"no answer within 0\.5 s"):
            infer_once(peer.url, timeout_s=0.5)
        assert time.monotonic() - started < 3


def test_a_slow_answer_within_the_timeout_is_answered():
    with Peer(_trickling(0.001)) as peer:
        assert infer_once(peer.url, timeout_s=20) == 2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_ipv6_address_in_brackets_is_reached(protocol):
    """`--url [::1]:PORT`: the brackets belong to the URL, not to the address."""
    from peers import H11

    def serve(link: Link) -> None:
        if protocol == "grpc":
            return h2_serving()(link)
        peer = H11(link)
        while peer.serve_one():
            pass

    with Peer(serve, host="::1") as peer:
        assert peer.url.startswith("[::1]:")
        assert infer_once(peer.url, protocol=protocol) == 2
