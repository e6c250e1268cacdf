"""Per-level summaries of server series (pure functions of timed samples)."""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field

from sonic_bench.metrics.collect import TimedSample


@dataclass(frozen=True)
class ServerSummary:
    inferences_per_s: float
    requests_per_s: float
    exec_batch_avg: float
    queue_us: float
    compute_infer_us: float
    pending_avg: float
    failures: dict[str, float] = field(default_factory=dict)
    gpu_utilization: float = math.nan
    gpu_memory_bytes: float = math.nan
    gpu_power_w: float = math.nan
    gpu_energy_j: float = math.nan  # over the span, every GPU's
    cpu_utilization: float = math.nan
    cpu_memory_bytes: float = math.nan


def _by_series(samples: list[TimedSample], metric: str, model: str | None):
    series: dict[tuple, list[TimedSample]] = defaultdict(list)
    for s in samples:
        if s.metric == metric and (model is None or s.label("model") == model):
            series[s.labels].append(s)
    return series


def _window(points: list[TimedSample], start: float, end: float) -> list[TimedSample]:
    """The samples that describe [start, end]: those inside it, or, when fewer than two
    scrapes fell inside (a short level, a late scrape), the two that bracket it."""
    inside = [p for p in points if start <= p.t <= end]
    if len(inside) >= 2:
        return inside
    times = [p.t for p in points]
    first = max(bisect.bisect_right(times, start) - 1, 0)
    last = min(bisect.bisect_left(times, end), len(points) - 1)
    return points[first : last + 1]


def series_increase(points: list[TimedSample], start: float, end: float) -> tuple[float, float]:
    """How much one counter grew over [start, end] and over how many seconds of samples,
    counting a drop as a reset to zero (a restarted server), as PromQL's increase()."""
    window = _window(sorted(points, key=lambda p: p.t), start, end)
    total = 0.0
    for before, after in itertools.pairwise(window):
        total += after.value - before.value if after.value >= before.value else after.value
    seconds = window[-1].t - window[0].t if len(window) >= 2 else 0.0
    return total, seconds


def counter_increase(samples: list[TimedSample], metric: str, model: str | None, start, end):
    """Sum over the counter's series (versions, failure reasons) of their increase."""
    series = _by_series(samples, metric, model).values()
    return sum(series_increase(points, start, end)[0] for points in series)


def counter_rate(samples: list[TimedSample], metric: str, model: str | None, start, end):
    """Per second over [start, end], from the samples that describe it."""
    parts = [series_increase(p, start, end) for p in _by_series(samples, metric, model).values()]
    seconds = max((s for _, s in parts), default=0.0)
    return sum(i for i, _ in parts) / seconds if seconds else math.nan


def gauge_mean(samples: list[TimedSample], metric: str, model: str | None, start, end) -> float:
    values = [
        s.value
        for s in samples
        if s.metric == metric
        and start <= s.t <= end
        and (model is None or s.label("model") in (None, model))
    ]
    return sum(values) / len(values) if values else math.nan


def _increase_if_any(samples: list[TimedSample], metric: str, start, end) -> float:
    """A device counter's increase over [start, end]; NaN where the server has none (no
    GPU), not 0."""
    if not _by_series(samples, metric, None):
        return math.nan
    return counter_increase(samples, metric, None, start, end)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def summarize(samples: list[TimedSample], model: str, start: float, end: float) -> ServerSummary:
    def rate(metric: str) -> float:
        return counter_rate(samples, metric, model, start, end)

    def inc(metric: str) -> float:
        return counter_increase(samples, metric, model, start, end)

    successes = inc("nv_inference_request_success")
    failures: dict[str, float] = defaultdict(float)
    for labels, points in _by_series(samples, "nv_inference_request_failure", model).items():
        reason = dict(labels).get("reason", "all")
        failures[reason] += counter_increase(
            points, "nv_inference_request_failure", model, start, end
        )
    return ServerSummary(
        inferences_per_s=rate("nv_inference_count"),
        requests_per_s=rate("nv_inference_request_success"),
        exec_batch_avg=_ratio(inc("nv_inference_count"), inc("nv_inference_exec_count")),
        queue_us=_ratio(inc("nv_inference_queue_duration_us"), successes),
        compute_infer_us=_ratio(inc("nv_inference_compute_infer_duration_us"), successes),
        pending_avg=gauge_mean(samples, "nv_inference_pending_request_count", model, start, end),
        failures={k: v for k, v in failures.items() if v},
        gpu_utilization=gauge_mean(samples, "nv_gpu_utilization", None, start, end),
        gpu_memory_bytes=gauge_mean(samples, "nv_gpu_memory_used_bytes", None, start, end),
        gpu_power_w=gauge_mean(samples, "nv_gpu_power_usage", None, start, end),
        gpu_energy_j=_increase_if_any(samples, "nv_energy_consumption", start, end),
        cpu_utilization=gauge_mean(samples, "nv_cpu_utilization", None, start, end),
        cpu_memory_bytes=gauge_mean(samples, "nv_cpu_memory_used_bytes", None, start, end),
    )
