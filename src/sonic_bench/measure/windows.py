"""Measurement windows and the stability rule, as pure functions of request records.

A level is stable when the last `windows` windows agree within `tolerance` on throughput
and on latency (each within tolerance of their mean; the average latency by default, or
the p99), as perf_analyzer decides it.
A window with fewer than `min_requests` completions cannot be judged: the caller
lengthens the windows instead of averaging noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np


class Stability(Enum):
    STABLE = "stable"
    UNSTABLE = "unstable"  # keep measuring
    TOO_FEW = "too few requests"  # lengthen the windows


@dataclass(frozen=True)
class StabilityRule:
    windows: int = 3
    tolerance: float = 0.10
    min_requests: int = 20  # below this a window's throughput is too coarse to judge (1/n)
    # Which latency must agree besides throughput: the average, as perf_analyzer does
    # unless given --percentile; a window's p99 of a few dozen answers is its slowest one
    # or two and swings with them.
    latency: Literal["avg", "p99"] = "avg"


@dataclass(frozen=True)
class WindowStats:
    start: float
    end: float
    requests: int  # successful
    inferences: int
    errors: int
    p99_ms: float
    avg_ms: float = math.nan

    def latency_ms(self, which: str) -> float:
        return self.p99_ms if which == "p99" else self.avg_ms

    @property
    def throughput(self) -> float:
        """Inferences per second."""
        return self.inferences / (self.end - self.start)


def window_stats(
    t_recv: np.ndarray,
    latency_ms: np.ndarray,
    batch: np.ndarray,
    ok: np.ndarray,
    start: float,
    end: float,
) -> WindowStats:
    """Requests that completed in [start, end)."""
    inside = (t_recv >= start) & (t_recv < end)
    good = inside & ok
    latencies = latency_ms[good]
    return WindowStats(
        start=start,
        end=end,
        requests=int(good.sum()),
        inferences=int(batch[good].sum()),
        errors=int((inside & ~ok).sum()),
        p99_ms=float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        avg_ms=float(latencies.mean()) if latencies.size else float("nan"),
    )


def count_window_end(answered: np.ndarray, end: float, needed: int) -> float | None:
    """Where a count window ends (perf_analyzer's count_windows): just after its
    `needed`-th answer (times of the answers since it began), not before `end`; None
    while it holds fewer."""
    if len(answered) < needed:
        return None
    return max(end, float(np.partition(answered, needed - 1)[needed - 1]) + 1e-6)


def _agree(values: Sequence[float], tolerance: float) -> bool:
    mean = float(np.mean(values))
    if not np.isfinite(mean) or mean == 0:
        return False
    return all(abs(v - mean) <= tolerance * mean for v in values)


def assess(windows: Sequence[WindowStats], rule: StabilityRule = StabilityRule()) -> Stability:
    if windows and windows[-1].requests < rule.min_requests:
        return Stability.TOO_FEW
    # Windows too short to judge (before they were lengthened) take no part.
    judged = [w for w in windows if w.requests >= rule.min_requests]
    if len(judged) < rule.windows:
        return Stability.UNSTABLE
    last = judged[-rule.windows :]
    stable = _agree([w.throughput for w in last], rule.tolerance) and _agree(
        [w.latency_ms(rule.latency) for w in last], rule.tolerance
    )
    return Stability.STABLE if stable else Stability.UNSTABLE
