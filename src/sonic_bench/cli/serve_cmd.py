"""`sonic-bench serve`: the embedded Triton server in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonic_bench.cli.common import add_repository, progress
from sonic_bench.errors import SonicBenchError
from sonic_bench.model.repository import embedded_repository
from sonic_bench.process import last_line
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
    )


def register(commands) -> None:
    parser = commands.add_parser("serve", help="run the embedded Triton server until Ctrl-C")
    add_server_options(parser)
    parser.add_argument(
        "--models", default="", help="comma-separated models to load (default: all)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    models = tuple(m for m in args.models.split(",") if m)
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
