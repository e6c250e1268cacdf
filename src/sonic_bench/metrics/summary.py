"""Per-level summaries of server series (pure functions of timed samples)."""

from __future__ import annotations

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
    cpu_utilization: float = math.nan
    cpu_memory_bytes: float = math.nan


def _by_series(samples: list[TimedSample], metric: str, model: str | None):
    series: dict[tuple, list[TimedSample]] = defaultdict(list)
    for s in samples:
        if s.metric == metric and (model is None or s.label("model") == model):
            series[s.labels].append(s)
    return series


def counter_increase(samples: list[TimedSample], metric: str, model: str | None, start, end):
    """Sum over series of (last value at or before end) - (last value at or before start)."""
    total = 0.0
    for points in _by_series(samples, metric, model).values():
        before = [p.value for p in points if p.t <= start]
        until = [p.value for p in points if p.t <= end]
        if until:
            total += until[-1] - (before[-1] if before else points[0].value)
    return total


def gauge_mean(samples: list[TimedSample], metric: str, model: str | None, start, end) -> float:
    values = [
        s.value
        for s in samples
        if s.metric == metric
        and start <= s.t <= end
        and (model is None or s.label("model") in (None, model))
    ]
    return sum(values) / len(values) if values else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def summarize(samples: list[TimedSample], model: str, start: float, end: float) -> ServerSummary:
    span = max(end - start, 1e-9)

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
        inferences_per_s=inc("nv_inference_count") / span,
        requests_per_s=successes / span,
        exec_batch_avg=_ratio(inc("nv_inference_count"), inc("nv_inference_exec_count")),
        queue_us=_ratio(inc("nv_inference_queue_duration_us"), successes),
        compute_infer_us=_ratio(inc("nv_inference_compute_infer_duration_us"), successes),
        pending_avg=gauge_mean(samples, "nv_inference_pending_request_count", model, start, end),
        failures={k: v for k, v in failures.items() if v},
        gpu_utilization=gauge_mean(samples, "nv_gpu_utilization", None, start, end),
        gpu_memory_bytes=gauge_mean(samples, "nv_gpu_memory_used_bytes", None, start, end),
        gpu_power_w=gauge_mean(samples, "nv_gpu_power_usage", None, start, end),
        cpu_utilization=gauge_mean(samples, "nv_cpu_utilization", None, start, end),
        cpu_memory_bytes=gauge_mean(samples, "nv_cpu_memory_used_bytes", None, start, end),
    )
