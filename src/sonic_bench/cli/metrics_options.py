"""Server-metrics options shared by the commands that run load, and their wiring."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sonic_bench.cli.common import progress
from sonic_bench.metrics.recording import MetricsOptions, RunMetrics
from sonic_bench.results.store import RunWriter


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


def metrics_for(args: argparse.Namespace, triton_metrics_url: str) -> RunMetrics:
    """The run's metrics recording; enter it (a context manager) to start collecting."""
    options = MetricsOptions(
        mode=args.metrics,
        prometheus_url=args.prometheus_url,
        prometheus_port=args.prometheus_port,
        interval_s=args.metrics_interval,
    )
    workdir = Path(tempfile.mkdtemp(prefix="sonic-prometheus-"))
    return RunMetrics(options, triton_metrics_url, workdir)


def announce(metrics: RunMetrics) -> None:
    for message in metrics.warnings:
        progress(f"warning: {message}")
    if metrics.source is not None:
        progress(f"server metrics: {metrics.source.name} every {metrics.options.interval_s:g} s")


def record_metrics(metrics: RunMetrics, writer: RunWriter, started: float) -> None:
    """Write the run's series and say in the manifest what was collected and what degraded."""
    known = len(writer.manifest.warnings)
    metrics.write(writer.folder, started, time.time())
    writer.update(metrics=metrics.info())
    for message in metrics.warnings:
        if (
            message not in writer.manifest.warnings[:known]
            and message not in writer.manifest.warnings
        ):
            writer.warn(message)
