"""Summary statistics of latencies (pure functions, no clocks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    count: int
    avg_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float

    def as_row(self) -> dict[str, float]:
        return {
            "latency_ms_avg": self.avg_ms,
            "latency_ms_std": self.std_ms,
            "latency_ms_p50": self.p50_ms,
            "latency_ms_p90": self.p90_ms,
            "latency_ms_p95": self.p95_ms,
            "latency_ms_p99": self.p99_ms,
        }


def summarize_latencies(latencies_ms: np.ndarray | list[float]) -> LatencySummary:
    values = np.asarray(latencies_ms, dtype=float)
    if values.size == 0:
        nan = float("nan")
        return LatencySummary(0, nan, nan, nan, nan, nan, nan)
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return LatencySummary(
        count=int(values.size),
        avg_ms=float(values.mean()),
        std_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
    )
