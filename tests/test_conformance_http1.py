"""The engine's HTTP/1.1 held to RFC 9112: h11 plays the server (`peers.py`), raw bytes
where a peer must answer in a way h11 would not (close-delimited, HTTP/1.0).

What a proxy in front of Triton may send instead of Triton's own Content-Length answers
(chunked bodies, bodies up to a close, interim 1xx answers, HTTP/1.0, its own error
pages) is read as HTTP says, and an error is told in one line."""

from __future__ import annotations

import select
import threading
import time

import h11
import pytest
from peers import H11, Link, Peer, client, http_answer

from sonic_bench.engine.client import InferError, is_rejection

pytestmark = pytest.mark.timeout(60)


def _serving(answer) -> callable:
    """Reads each request with h11 and lets `answer(peer, body)` write the answer."""

    def serve(link: Link) -> None:
        peer = H11(link)
        while (got := peer.request()) is not None:
            _, body = got
            if answer(peer, body) is False:
                return
            link.peer.served()
            if peer.conn.our_state is h11.MUST_CLOSE:
                return
            peer.conn.start_next_cycle()

    return serve


def _raw(head: bytes, close: bool):
    def answer(peer: H11, body: bytes):
        headers, data = http_answer(body)
        lines = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers)
        peer.link.send(head + lines + b"\r\n" + data)
        if close:
            return False
        # h11 did not write this answer: its books are squared by hand.
        peer.conn = h11.Connection(h11.SERVER)
        return None

    return answer


def infer_twice(url: str) -> tuple[list[int], int]:
    """Two requests on one client: their answers and how many connections they took."""
    c = client(url, "http")
    try:
        return [c.infer(0), c.infer(0)], c._http.opened
    finally:
        c.close()


def test_a_chunked_answer_is_read_whole():
    def answer(peer: H11, body: bytes):
        headers, data = http_answer(body)
        peer.answer(200, headers, data, length=False)  # h11 chunks it for HTTP/1.1

    with Peer(_serving(answer)) as peer:
        assert infer_twice(peer.url) == ([2, 2], 1)


def test_an_answer_without_length_ends_with_the_connection():
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
    with Peer(_serving(_raw(head, close=True))) as peer:
        assert infer_twice(peer.url) == ([2, 2], 2)


def test_interim_answers_are_skipped():
    def answer(peer: H11, body: bytes):
        headers, data = http_answer(body)
        peer.send(h11.InformationalResponse(status_code=100, headers=[]))
        peer.send(h11.InformationalResponse(status_code=103, headers=[("Link", "</x>")]))
        peer.answer(200, headers, data)

    with Peer(_serving(answer)) as peer:
        assert infer_twice(peer.url) == ([2, 2], 1)


def test_an_http_1_0_answer_closes_the_connection_by_default():
    """The peer keeps its socket open; a client that reused it would wait for ever."""
    head = b"HTTP/1.0 200 OK\r\n"

    def answer(peer: H11, body: bytes):
        headers, data = http_answer(body)
        lines = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers)
        peer.link.send(head + lines + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        peer.link.peer.served()
        peer.link.peer.stopping.wait()
        return False

    with Peer(_serving(answer)) as peer:
        assert infer_twice(peer.url) == ([2, 2], 2)


@pytest.mark.parametrize(
    ("status", "page", "message"),
    [
        (401, b"<html>401 Authorization Required</html>", "HTTP 401 Unauthorized: <html>401"),
        (429, b"slow down", "HTTP 429 Too Many Requests: slow down"),
        (500, b"upstream crashed\nat line 3", "HTTP 500 Internal Server Error: upstream crashed$"),
        (503, b'{"error":"model is not ready"}', "HTTP 503 Service Unavailable: model is not"),
    ],
)
def test_an_error_answer_is_one_line_naming_its_status(status, page, message):
    """A gateway's page or Triton's JSON error: the status and what it said, never a
    JSONDecodeError."""

    def answer(peer: H11, body: bytes):
        peer.answer(status, [("Content-Type", "text/html")], page)

    with Peer(_serving(answer)) as peer:
        c = client(peer.url, "http")
        try:
            with pytest.raises(InferError, match=message) as failed:
                c.infer(0)
        finally:
            c.close()
    # Refused before it was served (a token, a rate limit, shedding): counted apart.
    assert is_rejection(str(failed.value)) == (status != 500)


def test_conflicting_content_lengths_are_one_clear_error():
    def answer(peer: H11, body: bytes):
        peer.link.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nxxxxx")
        return False

    with Peer(_serving(answer)) as peer:
        c = client(peer.url, "http")
        try:
            with pytest.raises(InferError, match="Content-Length is not one number"):
                c.infer(0)
        finally:
            c.close()


def test_a_connection_the_server_closed_while_idle_is_opened_again():
    """A keep-alive timeout (nginx's 75 s, here at once): the next request notices the
    close before it is sent and goes on a new connection, instead of failing."""
    closed = threading.Event()

    def answer(peer: H11, body: bytes):
        headers, data = http_answer(body)
        peer.answer(200, headers, data)
        peer.link.peer.served()
        peer.link.sock.close()
        closed.set()
        return False

    with Peer(_serving(answer)) as peer:
        c = client(peer.url, "http")
        try:
            assert c.infer(0) == 2
            assert closed.wait(10)
            assert select.select([c._http.socket], [], [], 10)[0]  # the FIN has come
            assert c.infer(0) == 2
            assert c._http.opened == 2
        finally:
            c.close()


def test_timeout_bounds_a_request_the_server_trickles():
    def answer(peer: H11, body: bytes):
        headers, _ = http_answer(body)
        wire = peer.conn.send(h11.Response(status_code=200, headers=headers))
        for start in range(0, len(wire), 4):
            if peer.link.peer.stopping.wait(0.05):
                return False
            peer.link.send(wire[start : start + 4])
        return False

    with Peer(_serving(answer)) as peer:
        c = client(peer.url, "http", timeout_s=0.5)
        started = time.monotonic()
        try:
            with pytest.raises(InferError, match=r"no answer within 0\.5 s"):
                c.infer(0)
        finally:
            c.close()
        assert time.monotonic() - started < 3
