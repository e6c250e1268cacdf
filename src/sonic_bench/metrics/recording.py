"""Server metrics for one run: pick the source, degrade instead of failing, write them.

Prometheus missing, failing to start or unreachable gives a warning and the run goes on
with Triton's /metrics read directly at the same interval.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sonic_bench.metrics.collect import DirectSource, MetricsSource, PrometheusSource
from sonic_bench.metrics.prometheus import PrometheusConfig, PrometheusServer, PrometheusUnavailable
from sonic_bench.metrics.summary import ServerSummary, summarize
from sonic_bench.results.schema import MetricsInfo

Mode = Literal["auto", "prometheus", "direct", "off"]
METRICS_FILE = "metrics.csv.gz"


@dataclass(frozen=True)
class MetricsOptions:
    mode: Mode = "auto"
    prometheus_url: str | None = None  # an existing Prometheus (a cluster's)
    prometheus_port: int = 9090
    prometheus_binary: str = "prometheus"
    interval_s: float = 1.0


@dataclass
class RunMetrics:
    """Use as a context manager around a run; `warnings` collects what degraded."""

    options: MetricsOptions
    triton_metrics_url: str  # http://host:port/metrics
    workdir: Path
    source: MetricsSource | None = None
    server: PrometheusServer | None = None
    warnings: list[str] = field(default_factory=list)
    status: str = "off"

    def __enter__(self) -> RunMetrics:
        if self.options.mode == "off":
            return self
        if self.options.mode in ("auto", "prometheus"):
            self.source = self._prometheus()
        if self.source is None:
            self.source = DirectSource(self.triton_metrics_url, self.options.interval_s)
            self.status = "fallback" if self.options.mode != "direct" else "ok"
        return self

    def _prometheus(self) -> PrometheusSource | None:
        try:
            if self.options.prometheus_url:
                source = PrometheusSource(self.options.prometheus_url, self.options.interval_s)
                if not source.reachable():
                    raise PrometheusUnavailable(
                        f"Prometheus at {self.options.prometheus_url} is unreachable"
                    )
            else:
                target = self.triton_metrics_url.split("//", 1)[-1].split("/", 1)[0]
                config = PrometheusConfig(
                    triton_targets=(target,),
                    port=self.options.prometheus_port,
                    interval_s=self.options.interval_s,
                    binary=self.options.prometheus_binary,
                )
                self.server = PrometheusServer(config, self.workdir).start()
                source = PrometheusSource(self.server.url, self.options.interval_s)
        except PrometheusUnavailable as e:
            self.warnings.append(f"{e}; reading Triton's /metrics directly instead")
            return None
        self.status = "ok"
        return source

    def info(self) -> MetricsInfo:
        if self.source is None:
            return MetricsInfo(source=None, prometheus_url=None, status="off")
        url = None
        if isinstance(self.source, PrometheusSource):
            url = self.source.url
        return MetricsInfo(source=self.source.name, prometheus_url=url, status=self.status)

    def level(self, model: str, start: float, end: float) -> ServerSummary | None:
        if self.source is None:
            return None
        try:
            return summarize(self.source.samples(start, end), model, start, end)
        except Exception as e:  # a metrics failure must not end the load test
            self._degrade(f"metrics query failed ({type(e).__name__}: {e})")
            return None

    def _degrade(self, reason: str) -> None:
        if isinstance(self.source, DirectSource):
            self.warnings.append(reason)
            return
        self.warnings.append(f"{reason}; reading Triton's /metrics directly from now on")
        self.source = DirectSource(self.triton_metrics_url, self.options.interval_s)
        self.status = "fallback"

    def write(self, folder: Path, start: float, end: float) -> Path | None:
        if self.source is None:
            return None
        try:
            samples = self.source.samples(start, end)
        except Exception as e:  # keep the run's other results
            self.warnings.append(f"could not read the run's metrics: {e}")
            return None
        path = folder / METRICS_FILE
        with gzip.open(path, "wt", compresslevel=3) as f:
            f.write("t,metric,labels,value\n")
            for s in samples:
                labels = ";".join(f"{k}={v}" for k, v in s.labels)
                f.write(f"{s.t:.3f},{s.metric},{labels},{s.value:.9g}\n")
        return path

    def __exit__(self, *exc: object) -> None:
        if self.source is not None:
            self.source.close()
        if self.server is not None:
            self.server.stop()


def server_series_row(summary: ServerSummary | None) -> dict[str, float]:
    """The steps.csv columns that come from server metrics."""
    if summary is None:
        return {}
    return {"gpu_utilization": summary.gpu_utilization, "cpu_utilization": summary.cpu_utilization}
