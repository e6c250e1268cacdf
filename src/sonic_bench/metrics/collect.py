"""Where server metrics come from: a Prometheus (ours or a cluster's), or, when none is
usable, Triton's /metrics read directly at the same interval. Both give timed samples."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from sonic_bench.metrics.exposition import scrape

# What the paper watched, and what explains it: throughput, batching, queueing, devices.
SERIES = (
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_energy_consumption",  # joules since the server started, a counter per GPU
    "nv_cpu_utilization",
    "nv_cpu_memory_used_bytes",
)


# A series every Triton exports from its start, for each model it serves: its newest
# sample's time is its target's last scrape.
SCRAPED_SERIES = "nv_inference_count"
QUERY_TIMEOUT_S = 10.0  # a range query over a whole run takes well under a second


@dataclass(frozen=True)
class TimedSample:
    t: float
    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


class MetricsSource(Protocol):
    name: str
    interval_s: float

    def samples(self, start: float, end: float) -> list[TimedSample]: ...
    def close(self) -> None: ...


class PrometheusSource:
    """Range queries against a Prometheus that scrapes the server."""

    name = "prometheus"

    def __init__(self, url: str, interval_s: float = 1.0, timeout_s: float = QUERY_TIMEOUT_S):
        self.url = url
        self.interval_s = interval_s
        # The client's own retries back off for 6 s before giving up on a Prometheus that is
        # gone, and it waits forever on one that accepts and never answers: a run would
        # stall there instead of reading Triton directly. A query sent and not answered in
        # `timeout_s` is not sent again.
        retry = Retry(
            total=2, read=0, backoff_factor=0.1, status_forcelist=(429, 500, 502, 503, 504)
        )
        self._client = PrometheusConnect(url=url, disable_ssl=True, retry=retry, timeout=timeout_s)

    def reachable(self) -> bool:
        try:
            return bool(self._client.check_prometheus_connection())
        except Exception:  # any failure means: not usable
            return False

    def samples(self, start: float, end: float) -> list[TimedSample]:
        self._wait_for_scrape_after(end)
        out: list[TimedSample] = []
        query = '{__name__=~"' + "|".join(SERIES) + '"}'
        result = self._client.custom_query_range(
            query,
            start_time=dt.datetime.fromtimestamp(start, dt.UTC),
            end_time=dt.datetime.fromtimestamp(end, dt.UTC),
            step=f"{self.interval_s:g}",  # seconds; Prometheus takes no "0.5s"
        )
        for series in result:
            labels = dict(series["metric"])
            metric = labels.pop("__name__")
            # `instance` names the replica (host:port of its /metrics), as DirectSource's
            # label does: several replicas' counters stay apart, each its own series.
            keep = tuple(sorted((k, v) for k, v in labels.items() if k != "job"))
            out += [TimedSample(float(t), metric, keep, float(v)) for t, v in series["values"]]
        return sorted(out, key=lambda s: s.t)

    def _wait_for_scrape_after(self, end: float) -> None:
        """Until Prometheus holds a scrape taken at or after `end` of every server it
        scrapes, so a level's last second is not lost: ~half an interval past `end` on
        average, at most one and a half (a target that stopped answering)."""
        deadline = end + self.interval_s * 1.5
        while time.time() < deadline and self._oldest_latest_scrape() < end:
            time.sleep(0.05)

    def _oldest_latest_scrape(self) -> float:
        """When the target scraped least recently was last scraped (-inf: not known)."""
        try:
            result = self._client.custom_query(f"min(timestamp({SCRAPED_SERIES}))")
            return float(result[0]["value"][1])
        except Exception:  # no answer yet: the deadline decides
            return -math.inf

    def close(self) -> None:
        pass


def instance_of(metrics_url: str) -> str:
    """host:port of a /metrics URL: Prometheus's `instance` label for that target."""
    return metrics_url.split("//", 1)[-1].split("/", 1)[0]


class DirectSource:
    """Reads Triton's /metrics (of each replica) every `interval_s` in a background
    thread; each sample labelled with its `instance`, as Prometheus labels it."""

    name = "direct"

    def __init__(self, metrics_urls: str | tuple[str, ...], interval_s: float = 1.0):
        urls = (metrics_urls,) if isinstance(metrics_urls, str) else tuple(metrics_urls)
        self.metrics_urls = urls
        self.interval_s = interval_s
        self._samples: list[TimedSample] = []
        self.errors = 0
        self._stop = threading.Event()
        self._rounds = threading.Condition()
        self._last_round = -math.inf  # when the last finished round of reads began
        self._thread = threading.Thread(target=self._run, daemon=True, name="sonic-scrape")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.time()
            for url in self.metrics_urls:
                instance = (("instance", instance_of(url)),)
                try:
                    for s in scrape(url):
                        if s.metric in SERIES:
                            labels = tuple(sorted(s.labels + instance))
                            self._samples.append(TimedSample(began, s.metric, labels, s.value))
                except OSError:
                    self.errors += 1  # the server may be restarting; keep trying
            with self._rounds:
                self._last_round = began
                self._rounds.notify_all()
            self._stop.wait(max(0.0, self.interval_s - (time.time() - began)))

    def samples(self, start: float, end: float) -> list[TimedSample]:
        # Until a round of reads that began at or after `end` is done: a level's last
        # second is not lost (at most 1.1 intervals past `end`, a server slow to answer).
        with self._rounds:
            self._rounds.wait_for(
                lambda: self._last_round >= end or self._stop.is_set(),
                timeout=max(0.0, end + self.interval_s * 1.1 - time.time()),
            )
        return [s for s in list(self._samples) if start <= s.t <= end + self.interval_s]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
