"""Server metrics for one run: pick the source, degrade instead of failing, write them.

Prometheus missing, failing to start or unreachable gives a warning and the run goes on
with Triton's /metrics read directly at the same interval.
"""

from __future__ import annotations

import csv
import gzip
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sonic_bench.metrics.collect import (
    DirectSource,
    MetricsSource,
    PrometheusSource,
    TimedSample,
    instance_of,
)
from sonic_bench.metrics.prometheus import PrometheusConfig, PrometheusServer, PrometheusUnavailable
from sonic_bench.metrics.summary import ServerSummary, counter_increase, summarize
from sonic_bench.results.schema import MetricsInfo
from sonic_bench.results.store import RunWriter, writing

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
    # http://host:port/metrics of the server, or of each replica behind a gateway
    triton_metrics_urls: str | tuple[str, ...]
    source: MetricsSource | None = None
    server: PrometheusServer | None = None
    warnings: list[str] = field(default_factory=list)
    status: str = "off"
    # Every sample fetched so far, kept here as soon as a level ends: a Prometheus that
    # stops mid-run takes none of what it had already served with it.
    kept: list[TimedSample] = field(default_factory=list)
    fetched_until: float | None = None
    began: float = math.inf  # when recording began: the first fetch starts there
    scraping: bool = False  # our Prometheus has scraped every target (see ready_to_measure)

    def __enter__(self) -> RunMetrics:
        self.began = time.time()
        if self.options.mode == "off":
            return self
        if self.options.mode in ("auto", "prometheus"):
            self.source = self._prometheus()
        if self.source is None:
            self.source = DirectSource(self.triton_metrics_urls, self.options.interval_s)
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
                config = PrometheusConfig(
                    triton_targets=tuple(instance_of(url) for url in self._urls()),
                    port=self.options.prometheus_port,
                    interval_s=self.options.interval_s,
                    binary=self.options.prometheus_binary,
                )
                self.server = PrometheusServer(config).start()
                source = PrometheusSource(self.server.url, self.options.interval_s)
        except PrometheusUnavailable as e:
            self.warnings.append(f"{e}; reading Triton's /metrics directly instead")
            return None
        self.status = "ok"
        return source

    def ready_to_measure(self) -> None:
        """Call before the first level: waits until a Prometheus of our own has scraped
        every target once. It starts scraping ~5.5 s after it starts, so a run builds its
        workload meanwhile and waits here for what is left; one that scrapes nothing
        within its start timeout is replaced by reading Triton directly."""
        if self.server is None or self.scraping or not isinstance(self.source, PrometheusSource):
            return
        timeout = self.server.config.startup_timeout_s
        self.scraping = self.server.wait_until_scraping(timeout)
        if not self.scraping:  # the source becomes direct: nothing more to wait for
            self._degrade(f"Prometheus scraped no Triton target within {timeout:.0f} s")

    def _urls(self) -> tuple[str, ...]:
        urls = self.triton_metrics_urls
        return (urls,) if isinstance(urls, str) else tuple(urls)

    def info(self) -> MetricsInfo:
        if self.source is None:
            return MetricsInfo(source=None, prometheus_url=None, status="off")
        url = None
        if isinstance(self.source, PrometheusSource):
            url = self.source.url
        return MetricsInfo(source=self.source.name, prometheus_url=url, status=self.status)

    def fetch(self, start: float, end: float) -> None:
        """Keep the samples up to `end` not fetched yet (from `start` on the first call)."""
        if self.source is None:
            return
        since = min(self.began, start) if self.fetched_until is None else self.fetched_until
        try:
            new = self.source.samples(since, end)
        except Exception as e:  # a metrics failure must not end the load test
            self._degrade(f"metrics query failed ({type(e).__name__}: {e})")
            return
        last = self.kept[-1].t if self.kept else -math.inf
        self.kept += [s for s in new if s.t > last]
        self.fetched_until = max(end, self.fetched_until or end)

    def level(self, model: str, start: float, end: float) -> ServerSummary | None:
        if self.source is None:
            return None
        self.fetch(start, end)
        return summarize(self.kept, model, start, end)

    def _degrade(self, reason: str) -> None:
        if isinstance(self.source, DirectSource):
            self.warnings.append(reason)
            return
        self.warnings.append(f"{reason}; reading Triton's /metrics directly from now on")
        self.source = DirectSource(self.triton_metrics_urls, self.options.interval_s)
        self.status = "fallback"

    def write(self, folder: Path, start: float, end: float) -> Path | None:
        if self.source is None:
            return None
        self.fetch(start, end)
        margin = self.options.interval_s
        rows = [s for s in self.kept if start - margin <= s.t <= end + margin]
        labels = sorted({name for s in rows for name, _ in s.labels})
        path = folder / METRICS_FILE
        with writing(path), gzip.open(path, "wt", compresslevel=3, newline="") as f:
            # One column per label (schema v2), quoted by the csv module where needed.
            writer = csv.writer(f)
            writer.writerow(["t", "metric", "value", *labels])
            for s in rows:
                values = dict(s.labels)
                writer.writerow(
                    [f"{s.t:.3f}", s.metric, f"{s.value:.9g}", *(values.get(k, "") for k in labels)]
                )
        return path

    def verify(self, model: str, requests: int, start: float, end: float) -> None:
        """Say so when the metrics cannot be this server's: none at all, or fewer successful
        requests of `model` than this run itself had answered."""
        if self.source is None or requests <= 0:
            return
        url = ", ".join(self._urls())
        if not any(start <= s.t <= end + self.options.interval_s for s in self.kept):
            self.status = "no data"
            self.warnings.append(f"no server metrics were read from {url}: give --metrics-url")
            return
        counted = counter_increase(self.kept, "nv_inference_request_success", model, start, end)
        if counted < 0.5 * requests:
            self.status = "mismatch"
            self.warnings.append(
                f"the metrics at {url} counted {counted:.0f} successful requests of {model} "
                f"while this run had {requests} answered: they are not this server's "
                "(give --metrics-url); its server columns are not to be trusted"
            )

    def record(
        self, writer: RunWriter, start: float, end: float, requests_answered: int = 0
    ) -> None:
        """Write the run's series, check they are the measured server's (given the
        requests it answered), and say in the manifest what was collected and what
        degraded (each warning once)."""
        self.write(writer.folder, start, end)
        self.verify(writer.manifest.server.model, requests_answered, start, end)
        writer.update(metrics=self.info())
        for message in self.warnings:
            if message not in writer.manifest.warnings:
                writer.warn(message)

    def __exit__(self, *exc: object) -> None:
        if self.source is not None:
            self.source.close()
        if self.server is not None:
            self.server.stop()


def server_series_row(summary: ServerSummary | None) -> dict[str, float]:
    """The steps.csv columns that come from server metrics."""
    if summary is None:
        return {}
    return {
        "gpu_utilization": summary.gpu_utilization,
        "gpu_power_w": summary.gpu_power_w,
        "gpu_energy_j": summary.gpu_energy_j,
        "cpu_utilization": summary.cpu_utilization,
    }
