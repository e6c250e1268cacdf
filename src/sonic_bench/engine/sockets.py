"""The socket under both raw transports (`http1`, `http2`): where to connect, a
connected socket with Nagle off (requests are written whole; a small one must not wait
for an acknowledgement), wrapped in TLS when asked, and the write queue and read buffer
that let an event loop drive it.

On a non-blocking connection the connect and the TLS handshake are steps of the event
loop too (`flush` and `receive` make progress on them and say "not yet"): one replica
that does not accept, or accepts and never finishes its handshake, stalls only the
requests sent to it, each for at most its connect timeout, never the loop."""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl as ssl_module
import time
from collections.abc import Callable
from typing import TypeVar


def target_of(url: str) -> str:
    """host:port of a URL given with or without its scheme (an IPv6 host in brackets,
    as the Host and :authority headers carry it)."""
    return url.split("://", 1)[-1].rstrip("/")


def address_of(url: str, ssl: bool) -> tuple[str, int]:
    """(host, port) to connect to: an IPv6 host without its brackets."""
    target = target_of(url)
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port else (443 if ssl else 80)
    host, _, port = target.rpartition(":")
    if not host or ":" in host:  # no port, or an IPv6 address given without brackets
        return target, 443 if ssl else 80
    return host, int(port)


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


def start_connect(address: tuple[str, int]) -> socket.socket:
    """A non-blocking socket whose connect is under way (or refused at once)."""
    family, kind, proto, _, where = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(where)
        if code not in (0, errno.EINPROGRESS):
            host, port = address
            raise ConnectionError(f"no connection to {host}:{port}: {os.strerror(code)}")
    except BaseException:
        sock.close()
        raise
    return sock


class PeerClosed(ConnectionError):
    """The server closed the connection (an end of file where more was awaited)."""


T = TypeVar("T")
MAX_IOVECS = 512  # buffers per sendmsg, under the kernel's IOV_MAX (1024)
RECV_BYTES = 1 << 18
# Answers up to this size are cached by their bytes: shared-memory answers repeat byte
# for byte for the same batch, and parsing one costs more than the rest of a request.
SMALL_ANSWER_BYTES = 4096
WOULD_BLOCK = (BlockingIOError, ssl_module.SSLWantReadError, ssl_module.SSLWantWriteError)
_TCP, _TLS = "connecting", "handshaking"


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
        self._stage: str | None = None  # on the way to an open connection
        self._connect_deadline = 0.0  # time.monotonic()
        self._deadline: float | None = None  # of the blocking request under way
        self._handshake_writes = False  # the TLS handshake waits to write, not to read

    @property
    def connected(self) -> bool:
        return self.socket is not None

    @property
    def wants_write(self) -> bool:
        if self._stage == _TLS:  # the handshake says which way it waits
            return self._handshake_writes
        return bool(self.out) or self._stage == _TCP

    def fileno(self) -> int:
        return self.socket.fileno() if self.socket is not None else -1

    def open(self) -> None:
        """Connect: blocking (the handshake done on return), or started on a non-blocking
        socket, the rest done by `flush` and `receive` as the socket gets ready."""
        self.close()
        if self.blocking:
            self.socket = connect(self.address, self.tls, self.connect_timeout_s)
            self.socket.settimeout(self.timeout_s)
            self.opened += 1
            self.established()
            return
        self.socket = start_connect(self.address)
        self.opened += 1
        self._stage = _TCP
        self._connect_deadline = time.monotonic() + self.connect_timeout_s

    def established(self) -> None:
        """Called once the connection (and its TLS handshake) is up: what a protocol
        checks of it (ALPN)."""

    def connect_overdue(self) -> str | None:
        """Why the connection is given up on: not made within its connect timeout."""
        if self._stage is None or time.monotonic() < self._connect_deadline:
            return None
        host, port = self.address
        what = "no connection" if self._stage == _TCP else "no TLS handshake"
        return f"TimeoutError: {what} to {host}:{port} within {self.connect_timeout_s:g} s"

    def _establish(self) -> bool:
        """One step towards the open connection; True once it is open."""
        sock = self.socket
        if self._stage == _TCP:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                host, port = self.address
                self.close()
                raise ConnectionError(f"no connection to {host}:{port}: {os.strerror(code)}")
            try:
                sock.getpeername()
            except OSError:
                return False  # still connecting
            if self.tls is None:
                self._stage = None
                self.established()
                return True
            self.socket = self.tls.wrap_socket(
                sock, server_hostname=self.address[0], do_handshake_on_connect=False
            )
            self._stage = _TLS
        try:
            self.socket.do_handshake()
        except WOULD_BLOCK as e:
            self._handshake_writes = isinstance(e, ssl_module.SSLWantWriteError)
            return False
        except Exception:
            self.close()
            raise
        self._stage = None
        self.established()
        return True

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
        if self._stage is not None and not self._establish():
            return False
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
        if self._stage is not None and not self._establish():
            return False
        if self.blocking and self._deadline is not None:
            self.socket.settimeout(self._remaining())
        try:
            chunk = self.socket.recv(RECV_BYTES)
        except WOULD_BLOCK:
            return False
        if not chunk:
            raise PeerClosed("the server closed the connection")
        self.buffer += chunk
        return True

    def read_idle(self) -> bool:
        """Between requests: take in what the server sent without waiting (a GOAWAY, a
        close), on a blocking socket too. False when the server closed the connection
        (then it is closed here too, and the next request opens a fresh one)."""
        if self.socket is None or self._stage is not None:
            return self.socket is not None
        if self.blocking:
            self.socket.setblocking(False)
        try:
            while True:
                chunk = self.socket.recv(RECV_BYTES)
                if not chunk:
                    self.close()
                    return False
                self.buffer += chunk
        except WOULD_BLOCK:
            return True
        except OSError:
            self.close()
            return False
        finally:
            if self.blocking and self.socket is not None:
                self.socket.settimeout(self.timeout_s)

    def on_idle_readable(self) -> bool:
        """The socket became readable while no request was out: each protocol says what
        that means. False once the connection is gone."""
        raise NotImplementedError

    def finish(self, advance: Callable[[], T | None]) -> T:
        """Write and read until `advance` returns the answer (on a non-blocking socket too,
        waiting for it to be readable), within the request's timeout as a whole: a server
        that trickles its answer a byte at a time is cut off too."""
        self._deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                self.flush()
                if (answer := advance()) is not None:
                    return answer
                if not self.blocking:
                    self.wait_readable(self._remaining())
        except TimeoutError:
            self.close()
            raise TimeoutError(f"no answer within {self.timeout_s:g} s") from None
        finally:
            self._deadline = None
            if self.blocking and self.socket is not None:
                self.socket.settimeout(self.timeout_s)

    def _remaining(self) -> float:
        """Seconds left of the request's deadline (an error once there are none)."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer within {self.timeout_s:g} s")
        return remaining

    def wait_readable(self, timeout_s: float | None = None) -> None:
        """Block until something arrives, even on a non-blocking socket."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        writing = [self.socket] if self.wants_write else []
        readable, writable, _ = select.select([self.socket], writing, [], timeout_s)
        if not readable and not writable:
            raise TimeoutError(f"no answer within {self.timeout_s:g} s")

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        self._stage = None
        self.buffer.clear()
        self.out = []


def _write(sock: socket.socket, buffers: list) -> int:
    """Bytes written from `buffers`: gathered in one call (TLS sockets take one buffer)."""
    if isinstance(sock, ssl_module.SSLSocket):
        return sock.send(buffers[0])
    return sock.sendmsg(buffers)
