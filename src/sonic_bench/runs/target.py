"""What a run measures: a Triton already running at a URL, or the embedded one it starts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import LevelHooks
from sonic_bench.triton.client import Endpoint, Protocol
from sonic_bench.triton.server import EmbeddedServer, ServerConfig


@dataclass(frozen=True)
class Target:
    url: str | None = None  # host:port of a running Triton; None: start the embedded one
    protocol: Protocol = "grpc"
    ssl: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    shared_memory: bool = False
    metrics_url: str | None = None  # Triton's /metrics; default: the embedded server's
    server: ServerConfig | None = None  # how to start the embedded server


@dataclass(frozen=True)
class Reached:
    endpoint: Endpoint
    metrics_url: str


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """NAME:VALUE pairs (e.g. an authorization token) as a header dict."""
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise SonicBenchError(f"--header {pair!r} is not NAME:VALUE")
        headers[name.strip()] = value.strip()
    return headers


def _remote_metrics_url(url: str) -> str:
    return f"http://{url.rsplit(':', 1)[0]}:8002/metrics"


@contextmanager
def reach(target: Target, hooks: LevelHooks) -> Iterator[Reached]:
    """The endpoint to send to; the embedded server runs for the duration of the block."""
    if target.url:
        endpoint = Endpoint(
            target.url, target.protocol, target.ssl, target.headers, target.shared_memory
        )
        yield Reached(endpoint, target.metrics_url or _remote_metrics_url(target.url))
        return
    if target.server is None:
        raise ValueError("a Target without url needs a ServerConfig")
    server = EmbeddedServer(target.server)
    hooks.progress(f"starting tritonserver on {target.server.host} (log: {server.log_path}) ...")
    with server.start(on_wait=_waiting(hooks)):
        url = server.grpc_url if target.protocol == "grpc" else server.http_url
        endpoint = Endpoint(url, target.protocol, shared_memory=target.shared_memory)
        yield Reached(endpoint, target.metrics_url or server.metrics_url)


def _waiting(hooks: LevelHooks):
    """Progress every 10 s while the server loads its models (up to minutes on a busy CPU)."""
    shown = [0.0]

    def on_wait(waited: float) -> None:
        if waited - shown[0] >= 10.0:
            shown[0] = waited
            hooks.progress(f"  waiting for tritonserver: {waited:.0f} s ...")

    return on_wait
