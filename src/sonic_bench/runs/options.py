"""The one front door: the target and request options that `sonic-bench sweep` and the
Locust jobs share, added to either parser by one function and read by one function.

A user who moves from a sweep to a staircase keeps the same server, protocol, TLS,
headers, model, inputs and batch: the same flags, the same defaults. The default
protocol is gRPC for both: it is what the SONIC clients in production speak (LArSoft's
and CMSSW's Triton clients, SuperSONIC's gateways), and what the paper measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sonic_bench.engine.endpoint import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    Endpoint,
    Protocol,
    TlsOptions,
    check_timeouts,
)
from sonic_bench.errors import SonicBenchError
from sonic_bench.model.signature import parse_shapes
from sonic_bench.runs.target import check_replicas, normalize_url, parse_headers
from sonic_bench.workload.event import DEFAULT_SEED
from sonic_bench.workload.inputs import InputData
from sonic_bench.workload.plan import InputOptions, check_batch_text

DEFAULT_PROTOCOL: Protocol = "grpc"
# Where `sonic-bench serve` listens, for the Locust jobs when no target is named.
SERVE_PORTS = {"grpc": 8001, "http": 8000}


def add_target_options(group, batch_help: str, batch_aliases: tuple[str, ...] = ()) -> None:
    """The shared flags, on an argparse parser or group or on Locust's parser
    (`batch_aliases`: older spellings a parser still takes)."""
    group.add_argument(
        "--url",
        help="a running Triton (host:port; http(s):// or grpc(s):// say the scheme)",
    )
    group.add_argument("--protocol", choices=("grpc", "http"), default=DEFAULT_PROTOCOL)
    group.add_argument("--ssl", action="store_true", help="TLS to the server")
    group.add_argument(
        "--ssl-ca", metavar="FILE", help="CA bundle (PEM) that signed the server's certificate"
    )
    group.add_argument("--ssl-cert", metavar="FILE", help="client certificate (PEM) for mutual TLS")
    group.add_argument("--ssl-key", metavar="FILE", help="its private key (PEM)")
    group.add_argument(
        "--ssl-insecure",
        action="store_true",
        help="do not check the server's certificate (a self-signed test deployment)",
    )
    group.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra request header, e.g. a token (repeatable)",
    )
    group.add_argument(
        "--shared-memory", action="store_true", help="system shared memory (a local server)"
    )
    group.add_argument(
        "--replica",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="behind a gateway at --url: a replica reached directly, for its statistics "
        "(the run's counts are checked against their sum; repeatable)",
    )
    group.add_argument(
        "--replica-metrics",
        action="append",
        default=[],
        metavar="URL",
        help="each --replica's /metrics, in the same order (Prometheus scrapes them all)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="seconds a request may wait for its answer (a request queues behind every "
        "other in flight: at 400 clients on a CPU server ~80 s); a sweep's level ends at "
        "the first that times out, a job retries it (default %(default)g)",
    )
    group.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="S",
        help="seconds to connect, TCP and TLS (default %(default)g)",
    )
    group.add_argument(
        "--model",
        help="the served model to call (its tensors are read from it); a sweep takes a "
        "comma list, one run each",
    )
    group.add_argument("--batch", *batch_aliases, dest="batch", help=batch_help)
    group.add_argument(
        "--input-data",
        metavar="SOURCE",
        help="protodune (the default for a 48x48x1 patch model), random (any other's), zero, "
        "or perf_analyzer's input: a JSON file or a folder of one raw file per input",
    )
    group.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME:D1,D2",
        help="an input's shape without the batch dimension, for variable ones (repeatable)",
    )
    group.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload and data seed")


@dataclass(frozen=True)
class TargetOptions:
    """Where the server is, how to talk to it, which model, and what its requests hold."""

    url: str | None  # None: the embedded server (sweep) or `sonic-bench serve`'s (Locust)
    protocol: Protocol = DEFAULT_PROTOCOL
    ssl: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    shared_memory: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    tls: TlsOptions = field(default_factory=TlsOptions)
    replica_urls: tuple[str, ...] = ()
    replica_metrics_urls: tuple[str, ...] = ()
    model: str | None = None
    batches: tuple[str, ...] = ()  # the --batch values (a sweep may list several)
    input_data: InputData | None = None
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = DEFAULT_SEED

    def inputs(self, batch: str | None) -> InputOptions:
        return InputOptions(batch, self.input_data, dict(self.shapes), self.seed)

    def endpoint(self, url: str) -> Endpoint:
        return Endpoint(
            url,
            self.protocol,
            self.ssl,
            dict(self.headers),
            self.shared_memory,
            self.timeout_s,
            self.connect_timeout_s,
            self.tls,
        )

    def settings(self) -> dict:
        """As plain JSON values (a Locust worker's, compared with its master's)."""
        return {
            "url": self.url,
            "protocol": self.protocol,
            "ssl": self.ssl,
            "headers": dict(self.headers),
            "shared_memory": self.shared_memory,
            "timeout_s": self.timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "tls": self.tls.describe(),
            "replica_urls": list(self.replica_urls),
            "replica_metrics_urls": list(self.replica_metrics_urls),
            "model": self.model,
            "batches": list(self.batches),
            "input_data": self.input_data.describe() if self.input_data else None,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "seed": self.seed,
        }


def target_options(parsed, host: str | None = None) -> TargetOptions:
    """The shared options from a parsed command line (argparse's or Locust's); `host`
    is Locust's -H/--host (the web UI's Host field), which --url stands in for."""
    check_timeouts(parsed.timeout, parsed.connect_timeout)
    if parsed.seed < 0:
        raise SonicBenchError(f"--seed {parsed.seed}: give a number from 0 up")
    tls = TlsOptions(
        getattr(parsed, "ssl_ca", None),
        getattr(parsed, "ssl_cert", None),
        getattr(parsed, "ssl_key", None),
        bool(getattr(parsed, "ssl_insecure", False)),
    )
    url, ssl = parsed.url, parsed.ssl or tls.given  # a TLS option means TLS
    chosen = (host or url or "").strip() or None
    if chosen is not None:
        url, ssl = normalize_url(chosen, ssl)
    replicas = tuple(normalize_url(u, False)[0] for u in getattr(parsed, "replica", None) or ())
    replica_metrics = tuple(getattr(parsed, "replica_metrics", None) or ())
    check_replicas(replicas, replica_metrics)
    if replicas and not url:
        raise SonicBenchError("--replica names what is behind a gateway: give its --url too")
    text = (parsed.batch or "").strip()
    batches = tuple(check_batch_text(b) for b in text.split(",") if b.strip()) if text else ()
    return TargetOptions(
        url=url,
        protocol=parsed.protocol,
        ssl=ssl,
        headers=parse_headers(list(parsed.header or ())),
        shared_memory=bool(parsed.shared_memory),
        timeout_s=parsed.timeout,
        connect_timeout_s=parsed.connect_timeout,
        tls=tls,
        replica_urls=replicas,
        replica_metrics_urls=replica_metrics,
        model=parsed.model or None,
        batches=batches,
        input_data=InputData.parse(parsed.input_data),
        shapes=parse_shapes(list(parsed.shape or ())),
        seed=parsed.seed,
    )
