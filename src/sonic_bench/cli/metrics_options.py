"""Server-metrics options shared by the commands that run load."""

from __future__ import annotations

import argparse

from sonic_bench.metrics.recording import MetricsOptions


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server metrics")
    group.add_argument(
        "--metrics",
        choices=("auto", "prometheus", "direct", "off"),
        default="auto",
        help="auto: start Prometheus, fall back to reading /metrics directly (default)",
    )
    group.add_argument("--prometheus-url", help="use this Prometheus instead of starting one")
    group.add_argument("--prometheus-port", type=int, default=9090)
    group.add_argument("--metrics-url", help="Triton metrics URL when --url is remote")
    group.add_argument("--metrics-interval", type=float, default=1.0, help="seconds per scrape")


def metrics_options(args: argparse.Namespace) -> MetricsOptions:
    return MetricsOptions(
        mode=args.metrics,
        prometheus_url=args.prometheus_url,
        prometheus_port=args.prometheus_port,
        interval_s=args.metrics_interval,
    )
