"""The socket under both raw transports (`http_raw`, `http2`): where to connect, and a
connected socket with Nagle off (requests are written whole; a small one must not wait
for an acknowledgement), wrapped in TLS when asked."""

from __future__ import annotations

import socket
import ssl as ssl_module


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
    sock = socket.create_connection(address, timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=address[0])
    return sock
