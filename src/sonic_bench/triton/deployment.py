"""Several embedded Triton replicas behind the gateway: SuperSONIC's shape on one machine.

Each replica is an `EmbeddedServer` on loopback ports of its own; the gateway listens on
the ports a single server would (so a client's defaults still reach it) and is the only
door: TLS, the token, least-connection balancing. What a run needs besides the door is
kept here too: each replica's own address (its statistics, for counts that must equal
the run's) and its /metrics (Prometheus scrapes every replica)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from sonic_bench.errors import SonicBenchError
from sonic_bench.process import free_port
from sonic_bench.triton.gateway import Gateway, GatewayConfig, new_token
from sonic_bench.triton.server import EmbeddedServer, ServerConfig

MAX_REPLICAS = 16


@dataclass(frozen=True)
class GatewayOptions:
    """How the gateway in front of the replicas is to behave (the CLI's --gateway-*)."""

    tls: bool = True
    token: str | None = ""  # "": one made for the run; None: no token asked for
    rate_limit: float | None = None


@dataclass(frozen=True)
class Replica:
    """One replica as a client reaches it directly."""

    grpc_url: str
    http_url: str
    metrics_url: str

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url


class Deployment:
    """N embedded replicas and the gateway in front of them; a context manager that
    starts them all and stops every one on every way out."""

    def __init__(self, server: ServerConfig, replicas: int, gateway: GatewayOptions):
        if not 1 <= replicas <= MAX_REPLICAS:
            raise SonicBenchError(f"--replicas {replicas}: give 1 to {MAX_REPLICAS}")
        self.server = server
        self.count = replicas
        self.options = gateway
        self.token = new_token() if gateway.token == "" else gateway.token
        self.replicas: list[EmbeddedServer] = []
        self.gateway: Gateway | None = None
        self._stack = contextlib.ExitStack()

    def start(self, on_wait: Callable[[float], None] | None = None) -> Deployment:
        try:
            for _ in range(self.count):
                config = replace(
                    self.server,
                    http_port=free_port(self.server.host),
                    grpc_port=free_port(self.server.host),
                    metrics_port=free_port(self.server.host),
                    log_path=None,
                )
                replica = EmbeddedServer(config)
                self._stack.enter_context(replica.start(on_wait=on_wait))
                self.replicas.append(replica)
            gateway = GatewayConfig(
                replicas=tuple((r.grpc_url, r.http_url) for r in self.replicas),
                host=self.server.host,
                grpc_port=self.server.grpc_port,
                http_port=self.server.http_port,
                token=self.token,
                tls=self.options.tls,
                rate_limit=self.options.rate_limit,
            )
            self.gateway = self._stack.enter_context(Gateway(gateway).start())
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def grpc_url(self) -> str:
        assert self.gateway is not None
        return self.gateway.grpc_url

    @property
    def http_url(self) -> str:
        assert self.gateway is not None
        return self.gateway.http_url

    @property
    def headers(self) -> dict[str, str]:
        return self.gateway.headers if self.gateway else {}

    def reached_replicas(self) -> tuple[Replica, ...]:
        return tuple(Replica(r.grpc_url, r.http_url, r.metrics_url) for r in self.replicas)

    def client_flags(self, protocol: str) -> list[str]:
        """The flags that point a sweep or a Locust run at this deployment."""
        assert self.gateway is not None
        url = self.grpc_url if protocol == "grpc" else self.http_url
        flags = ["--url", url, "--protocol", protocol]
        if self.gateway.certificate is not None:
            flags += ["--ssl-ca", str(self.gateway.certificate)]
        for name, value in self.headers.items():
            flags += ["--header", f"{name}: {value}"]
        for replica in self.reached_replicas():
            flags += ["--replica", replica.url(protocol), "--replica-metrics", replica.metrics_url]
        return flags

    def stop(self) -> None:
        self._stack.close()
        self.replicas = []
        self.gateway = None

    def __enter__(self) -> Deployment:
        if self.gateway is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
