"""The socket under both raw transports (`http1`, `http2`): where to connect, a
connected socket with Nagle off (requests are written whole; a small one must not wait
for an acknowledgement), wrapped in TLS when asked, and the write queue and read buffer
that let an event loop drive it."""

from __future__ import annotations

import select
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import TypeVar


def target_of(url: str) -> str:
    """host:port of a URL given with or without its scheme."""
    return url.split("://", 1)[-1].rstrip("/")


def address_of(url: str, ssl: bool) -> tuple[str, int]:
    target = target_of(url)
    host, _, port = target.rpartition(":")
    return (host, int(port)) if host else (target, 443 if ssl else 80)


def connect(
    address: tuple[str, int], tls: ssl_module.SSLContext | None, timeout_s: float
) -> socket.socket:
    """A connected socket (and its TLS handshake done) within `timeout_s`, or an error."""
    try:
        sock = socket.create_connection(address, timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=address[0])
    except TimeoutError:
        raise TimeoutError(
            f"no connection to {address[0]}:{address[1]} within {timeout_s:g} s"
        ) from None
    return sock


T = TypeVar("T")
MAX_IOVECS = 512  # buffers per sendmsg, under the kernel's IOV_MAX (1024)
RECV_BYTES = 1 << 18
# Answers up to this size are cached by their bytes: shared-memory answers repeat byte
# for byte for the same batch, and parsing one costs more than the rest of a request.
SMALL_ANSWER_BYTES = 4096
WOULD_BLOCK = (BlockingIOError, ssl_module.SSLWantReadError, ssl_module.SSLWantWriteError)


class Connection:
    """A client socket with a queue of what is to be written and a buffer of what has
    been read: what both raw transports share. Blocking (a timeout of `timeout_s`), or
    non-blocking for an event loop, where `flush` writes what the socket takes and
    `receive` reads what has arrived. Not thread-safe: one owner.

    A connection that failed mid-request cannot be trusted: it is closed, and the next
    request opens a fresh one (as a client after a server restart would)."""

    def __init__(
        self,
        address: tuple[str, int],
        tls: ssl_module.SSLContext | None,
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ):
        self.address = address
        self.tls = tls
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s or timeout_s
        self.blocking = True
        self.socket: socket.socket | None = None
        self.buffer = bytearray()  # read, not yet consumed
        self.out: list = []  # bytes-like buffers queued for the socket
        self.opened = 0  # sockets opened so far

    @property
    def connected(self) -> bool:
        return self.socket is not None

    @property
    def wants_write(self) -> bool:
        return bool(self.out)

    def fileno(self) -> int:
        return self.socket.fileno() if self.socket is not None else -1

    def open(self) -> socket.socket:
        """Connect (blocking: a handshake the caller sends next is written whole)."""
        self.close()
        self.socket = connect(self.address, self.tls, self.connect_timeout_s)
        self.opened += 1
        return self.socket

    def settle(self) -> None:
        """After the handshake: the socket as its owner drives it."""
        self.set_blocking(self.blocking)

    def set_blocking(self, blocking: bool) -> None:
        self.blocking = blocking
        if self.socket is not None:
            if blocking:
                self.socket.settimeout(self.timeout_s)
            else:
                self.socket.setblocking(False)

    def flush(self) -> bool:
        """Write queued buffers (gathered, a few hundred per system call); True once none
        is left. A blocking socket writes them all."""
        buffers = self.out
        while buffers:
            batch = buffers[:MAX_IOVECS]
            try:
                written = _write(self.socket, batch)
            except WOULD_BLOCK:
                return False
            except Exception:
                self.close()  # a connection that failed mid-request cannot be trusted
                raise
            for index, chunk in enumerate(batch):
                if written < len(chunk):  # a partial write: resume mid-buffer
                    buffers[:index] = []
                    buffers[0] = memoryview(chunk)[written:]
                    break
                written -= len(chunk)
            else:
                del buffers[: len(batch)]
        return True

    def receive(self) -> bool:
        """Append what has arrived to `buffer` (blocking: wait for it); False when
        nothing had (non-blocking only). A closed connection is an error."""
        try:
            chunk = self.socket.recv(RECV_BYTES)
        except WOULD_BLOCK:
            return False
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk
        return True

    def finish(self, advance: Callable[[], T | None]) -> T:
        """Write and read until `advance` returns the answer (on a non-blocking socket too,
        waiting for it to be readable)."""
        while True:
            self.flush()
            if (answer := advance()) is not None:
                return answer
            if not self.blocking:
                self.wait_readable()

    def wait_readable(self) -> None:
        """Block until something arrives, even on a non-blocking socket."""
        readable, _, _ = select.select([self.socket], [], [], self.timeout_s)
        if not readable:
            raise TimeoutError(f"no answer within {self.timeout_s:g} s")

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        self.buffer.clear()
        self.out = []


def _write(sock: socket.socket, buffers: list) -> int:
    """Bytes written from `buffers`: gathered in one call (TLS sockets take one buffer)."""
    if isinstance(sock, ssl_module.SSLSocket):
        return sock.send(buffers[0])
    return sock.sendmsg(buffers)
