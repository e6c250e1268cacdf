"""What a run measures: a Triton already running at a URL (a gateway in front of
replicas, named with --replica), or the embedded one it starts (or several, behind the
gateway it starts in front of them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from sonic_bench.engine.endpoint import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    Endpoint,
    Protocol,
    TlsOptions,
    check_timeouts,
)
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import LevelHooks
from sonic_bench.triton.deployment import Deployment, GatewayOptions
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
    timeout_s: float = DEFAULT_TIMEOUT_S  # per request and admin call
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    tls: TlsOptions = field(default_factory=TlsOptions)
    # Behind a gateway at `url`: each replica's own address (its statistics) and /metrics.
    replica_urls: tuple[str, ...] = ()
    replica_metrics_urls: tuple[str, ...] = ()
    # The embedded deployment: this many replicas, the gateway in front of them.
    replicas: int = 1
    gateway: GatewayOptions | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            url, ssl = normalize_url(self.url, self.ssl)
            object.__setattr__(self, "url", url)
            object.__setattr__(self, "ssl", ssl)
        check_timeouts(self.timeout_s, self.connect_timeout_s)  # before a server starts
        check_replicas(self.replica_urls, self.replica_metrics_urls)
        if self.url is not None and (self.replicas > 1 or self.gateway is not None):
            raise SonicBenchError(
                "--replicas and --gateway start an embedded deployment: drop --url, or name "
                "a running deployment's replicas with --replica"
            )
        if self.url is None and self.replicas > 1 and self.gateway is None:
            raise SonicBenchError(
                f"--replicas {self.replicas} needs a door in front of them: add --gateway"
            )
        through_gateway = self.gateway is not None or bool(self.replica_urls)
        if self.shared_memory and through_gateway:
            raise SonicBenchError(
                "--shared-memory cannot go through a gateway (each replica would need the "
                "regions registered with it): drop one of them"
            )

    def endpoint(self, url: str) -> Endpoint:
        return Endpoint(
            url,
            self.protocol,
            self.ssl,
            self.headers,
            self.shared_memory,
            self.timeout_s,
            self.connect_timeout_s,
            self.tls,
        )


_SCHEMES = {"http": False, "grpc": False, "https": True, "grpcs": True}


def normalize_url(url: str, ssl: bool) -> tuple[str, bool]:
    """host:port from what a user may paste (`http://host:port/`, `https://...`), and
    whether it asks for TLS; one clear error for anything that names no server."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme.lower() not in _SCHEMES:
            raise SonicBenchError(
                f"--url {url!r}: unknown scheme {scheme!r}: give host:port "
                "(or http://, https://, grpc://, grpcs://)"
            )
        ssl = ssl or _SCHEMES[scheme.lower()]
        text = rest
    text = text.rstrip("/")
    if "/" in text or not text:
        raise SonicBenchError(f"--url {url!r}: give host:port, without a path")
    host, colon, port = text.rpartition(":")
    if colon and (not host or not port.isdigit() or not 1 <= int(port) <= 65535):
        raise SonicBenchError(f"--url {url!r}: the port must be a number from 1 to 65535")
    return text, ssl


def check_replicas(urls: tuple[str, ...], metrics_urls: tuple[str, ...]) -> None:
    if metrics_urls and len(metrics_urls) != len(urls):
        raise SonicBenchError(
            f"{len(metrics_urls)} --replica-metrics for {len(urls)} --replica: give one "
            "per replica, in the same order, or none"
        )


@dataclass(frozen=True)
class Reached:
    endpoint: Endpoint
    metrics_urls: tuple[str, ...]  # the server's /metrics, or every replica's
    # Behind a gateway: each replica reached directly, for its own statistics.
    replicas: tuple[Endpoint, ...] = ()
    gateway: dict | None = None  # what the run records of the gateway it went through


def parse_headers(pairs: list[str]) -> dict[str, str]:
    """NAME:VALUE pairs (e.g. an authorization token) as a header dict."""
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise SonicBenchError(f"--header {pair!r} is not NAME:VALUE")
        # Header names are case-insensitive in HTTP; gRPC metadata keys must be lower case.
        headers[name.strip().lower()] = value.strip()
    return headers


def _remote_metrics_url(url: str) -> str:
    return f"http://{url.rsplit(':', 1)[0]}:8002/metrics"


@contextmanager
def reach(target: Target, hooks: LevelHooks) -> Iterator[Reached]:
    """The endpoint to send to; the embedded server (or deployment) runs for the
    duration of the block."""
    if target.url:
        endpoint = target.endpoint(target.url)
        replicas = tuple(direct(endpoint, url) for url in target.replica_urls)
        metrics = target.replica_metrics_urls or (
            target.metrics_url or _remote_metrics_url(target.url),
        )
        gateway = {"replicas": list(target.replica_urls)} if replicas else None
        yield Reached(endpoint, tuple(metrics), replicas, gateway)
        return
    if target.server is None:
        raise ValueError("a Target without url needs a ServerConfig")
    if target.gateway is not None:
        with _deployment(target, hooks) as reached:
            yield reached
        return
    server = EmbeddedServer(target.server)
    hooks.progress(f"starting tritonserver on {target.server.host} (log: {server.log_path}) ...")
    with server.start(on_wait=_waiting(hooks)):
        url = server.grpc_url if target.protocol == "grpc" else server.http_url
        endpoint = replace(target.endpoint(url), ssl=False, headers={})
        yield Reached(endpoint, (target.metrics_url or server.metrics_url,))


def direct(endpoint: Endpoint, url: str) -> Endpoint:
    """A replica behind the gateway, spoken to directly: plain, no token (the inside of
    a deployment), the same protocol and deadlines."""
    return replace(endpoint, url=url, ssl=False, tls=TlsOptions(), headers={})


@contextmanager
def _deployment(target: Target, hooks: LevelHooks) -> Iterator[Reached]:
    assert target.server is not None and target.gateway is not None
    deployment = Deployment(target.server, target.replicas, target.gateway)
    hooks.progress(
        f"starting {target.replicas} tritonserver replica(s) behind an nginx gateway on "
        f"{target.server.host} ..."
    )
    with deployment.start(on_wait=_waiting(hooks)):
        gateway = deployment.gateway
        assert gateway is not None
        url = deployment.grpc_url if target.protocol == "grpc" else deployment.http_url
        certificate = gateway.certificate
        endpoint = replace(
            target.endpoint(url),
            ssl=certificate is not None,
            tls=TlsOptions(ca=str(certificate)) if certificate else TlsOptions(),
            headers={**target.headers, **deployment.headers},
        )
        replicas = deployment.reached_replicas()
        hooks.progress(
            f"gateway at {url} ({'TLS, ' if certificate else ''}"
            f"{'token, ' if deployment.token else ''}least connections) in front of "
            + ", ".join(r.url(target.protocol) for r in replicas)
        )
        yield Reached(
            endpoint,
            tuple(r.metrics_url for r in replicas),
            tuple(direct(endpoint, r.url(target.protocol)) for r in replicas),
            {
                "replicas": [r.url(target.protocol) for r in replicas],
                "tls": certificate is not None,
                "token": bool(deployment.token),
                "rate_limit": target.gateway.rate_limit,
                "proxy": "nginx",
            },
        )


def _waiting(hooks: LevelHooks):
    """Progress every 10 s while the server loads its models (up to minutes on a busy CPU)."""
    shown = [0.0]

    def on_wait(waited: float) -> None:
        if waited - shown[0] >= 10.0:
            shown[0] = waited
            hooks.progress(f"  waiting for tritonserver: {waited:.0f} s ...")

    return on_wait
