"""`sonic-bench serve`: the embedded Triton server in the foreground until Ctrl-C, or
several replicas behind the nginx gateway (`--replicas N --gateway`)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from sonic_bench.cli.common import add_repository, progress
from sonic_bench.errors import SonicBenchError
from sonic_bench.model.repository import embedded_repository
from sonic_bench.process import last_line
from sonic_bench.triton.deployment import Deployment, GatewayOptions
from sonic_bench.triton.server import EmbeddedServer, ServerConfig


def add_server_options(parser: argparse.ArgumentParser) -> None:
    add_repository(parser)
    group = parser.add_argument_group("embedded server")
    group.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    group.add_argument("--http-port", type=int, default=8000)
    group.add_argument("--grpc-port", type=int, default=8001)
    group.add_argument("--metrics-port", type=int, default=8002)
    group.add_argument(
        "--startup-timeout", type=float, default=180.0, help="seconds to wait for readiness"
    )
    group.add_argument("--server-log", type=Path, help="write the server's log here")
    group.add_argument(
        "--gpu-metrics",
        action="store_true",
        help="Triton's GPU metrics (utilization, memory, power, energy: a GPU machine)",
    )
    group.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="N embedded tritonservers behind the gateway (needs --gateway)",
    )
    group.add_argument(
        "--gateway",
        action="store_true",
        help="nginx in front (on --grpc-port/--http-port): TLS with a certificate made for "
        "the run, a bearer token, least-connection balancing",
    )
    group.add_argument(
        "--gateway-token",
        metavar="TOKEN",
        help="the bearer token the gateway asks for (default: one made for the run; "
        "'none': no token)",
    )
    group.add_argument("--gateway-plain", action="store_true", help="the gateway without TLS")
    group.add_argument(
        "--gateway-rate-limit",
        type=float,
        metavar="R",
        help="requests per second the gateway lets through; beyond, it answers 429",
    )


def gateway_options(args: argparse.Namespace) -> GatewayOptions | None:
    given = args.gateway_token or args.gateway_plain or args.gateway_rate_limit is not None
    if not args.gateway:
        if given:
            raise SonicBenchError("--gateway-* options shape the gateway: add --gateway")
        return None
    token = args.gateway_token
    return GatewayOptions(
        tls=not args.gateway_plain,
        token=None if token == "none" else (token or ""),
        rate_limit=args.gateway_rate_limit,
    )


def server_config(args: argparse.Namespace, models: tuple[str, ...] = ()) -> ServerConfig:
    return ServerConfig(
        repository=embedded_repository(args.repository),
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        models=models,
        startup_timeout_s=args.startup_timeout,
        log_path=args.server_log,
        gpu_metrics=args.gpu_metrics,
    )


def register(commands) -> None:
    parser = commands.add_parser(
        "serve", help="run the embedded Triton server (or replicas behind a gateway) until Ctrl-C"
    )
    add_server_options(parser)
    parser.add_argument(
        "--models", default="", help="comma-separated models to load (default: all)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    models = tuple(m for m in args.models.split(",") if m)
    gateway = gateway_options(args)
    if gateway is not None:
        return _serve_deployment(args, models, gateway)
    if args.replicas != 1:
        raise SonicBenchError(
            f"--replicas {args.replicas} needs a door in front of them: add --gateway"
        )
    server = EmbeddedServer(server_config(args, models))
    progress(f"starting tritonserver on {args.host} (log: {server.log_path}) ...")
    server.start()
    try:
        print(f"tritonserver ready: HTTP {server.http_url}  gRPC {server.grpc_url}")
        print(f"metrics: {server.metrics_url}")
        print("Ctrl-C stops it.", flush=True)
        code = server.wait()
        raise SonicBenchError(
            f"tritonserver exited with code {code}: {last_line(server.log_text())}"
        )
    except KeyboardInterrupt:
        progress("stopping tritonserver ...")
        return 0
    finally:
        server.stop()


def _serve_deployment(args: argparse.Namespace, models: tuple[str, ...], gateway) -> int:
    config = server_config(args, models)
    deployment = Deployment(config, args.replicas, gateway)
    progress(f"starting {args.replicas} tritonserver replica(s) and the nginx gateway ...")
    deployment.start()
    try:
        print(f"gateway ready: gRPC {deployment.grpc_url}  HTTP {deployment.http_url}")
        for protocol in ("grpc", "http"):
            flags = shlex.join(deployment.client_flags(protocol))
            print(f"{protocol}: sonic-bench sweep {flags}")
        print("(the same flags for locust -f loadgen/sonic.py)")
        print("Ctrl-C stops them.", flush=True)
        code = deployment.replicas[0].wait()
        raise SonicBenchError(f"a replica exited with code {code}")
    except KeyboardInterrupt:
        progress("stopping the gateway and the replicas ...")
        return 0
    finally:
        deployment.stop()
