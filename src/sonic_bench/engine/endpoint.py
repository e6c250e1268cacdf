"""Where the server is and how the engine talks to it: URL, protocol, TLS, headers,
deadlines. Shared by the engine's connections and tritonclient's admin calls."""

from __future__ import annotations

import functools
import math
import ssl as ssl_module
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sonic_bench.errors import SonicBenchError

Protocol = Literal["grpc", "http"]
# A request queues behind every other in flight: at 400 clients of ~1,700 patches each a
# CPU server answers the last after ~80 s. A grid job's wait is the figure, not a fault.
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TlsOptions:
    """How the client's TLS trusts the server and proves itself: a CA bundle of the
    deployment's own (`--ssl-ca`), a client certificate and key for mutual TLS
    (`--ssl-cert`, `--ssl-key`), or no check of the server's certificate at all
    (`--ssl-insecure`, for a self-signed test deployment). None of them: the system's
    CAs, the host name checked."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise SonicBenchError(
                "mutual TLS needs both --ssl-cert and --ssl-key: give the client's certificate "
                "and its private key"
            )
        if self.insecure and self.ca is not None:
            raise SonicBenchError(
                "--ssl-insecure checks no certificate, so --ssl-ca would not be used: give one"
            )
        files = (("--ssl-ca", self.ca), ("--ssl-cert", self.cert), ("--ssl-key", self.key))
        for flag, path in files:
            if path is not None and not Path(path).is_file():
                raise SonicBenchError(f"{flag} {path}: no such file")

    def describe(self) -> dict:
        """As the manifest records it: files by path, never their contents."""
        return {
            "ca": self.ca,
            "client_certificate": self.cert,
            "insecure": self.insecure,
        }

    @property
    def given(self) -> bool:
        return self.ca is not None or self.cert is not None or self.insecure

    def context(self, alpn: tuple[str, ...] = ()) -> ssl_module.SSLContext:
        """The client's TLS context (one per options and protocols, made once)."""
        return _context(self, alpn)

    def read(self) -> dict[str, bytes | None]:
        """The PEM files' bytes (for clients that take them so: grpc's)."""
        return {
            name: Path(path).read_bytes() if path else None
            for name, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key))
        }


@functools.lru_cache(maxsize=16)
def _context(options: TlsOptions, alpn: tuple[str, ...]) -> ssl_module.SSLContext:
    try:
        context = ssl_module.create_default_context(cafile=options.ca)
        if options.insecure:
            context.check_hostname = False
            context.verify_mode = ssl_module.CERT_NONE
        if options.cert is not None:
            context.load_cert_chain(options.cert, options.key)
    except (OSError, ssl_module.SSLError, ValueError) as e:
        raise SonicBenchError(
            f"TLS: cannot use the given certificates ({e}): check the files"
        ) from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


@dataclass(frozen=True)
class Endpoint:
    """Where the server is and how to talk to it."""

    url: str  # host:port
    protocol: Protocol = "grpc"
    ssl: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    shared_memory: bool = False
    # Every wait has a bound: an inference request or admin call that is not answered
    # within timeout_s fails, and so does a connection (TCP and TLS) not made within
    # connect_timeout_s. A server that reads and never answers must not hold a run.
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    tls: TlsOptions = field(default_factory=TlsOptions)

    def __post_init__(self) -> None:
        check_timeouts(self.timeout_s, self.connect_timeout_s)

    def tls_context(self, alpn: tuple[str, ...] = ()) -> ssl_module.SSLContext | None:
        """The TLS context of this endpoint's connections; None without TLS."""
        return self.tls.context(alpn) if self.ssl else None


def check_timeouts(timeout_s: float, connect_timeout_s: float) -> None:
    for name, value in (("--timeout", timeout_s), ("--connect-timeout", connect_timeout_s)):
        if not (math.isfinite(value) and value > 0):
            raise SonicBenchError(f"{name} {value:g}: give a positive number of seconds")
