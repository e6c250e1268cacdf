"""Which concurrency to measure next when looking for the most load within a p99 budget.

perf_analyzer's `--latency-threshold` with `--binary-search`: measure the lowest level,
then the highest, then halve the gap between the highest level within the budget and the
lowest over it, until they are neighbours. A pure function of what was measured so far,
so the sweep loop only asks and measures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sonic_bench.errors import SonicBenchError


@dataclass(frozen=True)
class LatencyBudgetSearch:
    budget_ms: float
    low: int
    high: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise SonicBenchError(f"--latency-budget {self.budget_ms}: give a p99 in ms above 0")
        if not 1 <= self.low <= self.high:
            raise SonicBenchError("--latency-budget needs concurrency levels from 1 upwards")

    @property
    def most_steps(self) -> int:
        """Levels measured at most: both ends, then one per halving."""
        if self.low == self.high:
            return 1
        return 2 + math.ceil(math.log2(self.high - self.low))

    def next_concurrency(self, p99_ms: Mapping[int, float]) -> int | None:
        """The next level to measure given the p99 of each level measured; None: done."""
        if self.low not in p99_ms:
            return self.low
        if p99_ms[self.low] > self.budget_ms:
            return None  # even the lowest load is over the budget
        if self.high not in p99_ms:
            return self.high
        over = [c for c, p in p99_ms.items() if p > self.budget_ms]
        if not over:
            return None  # the highest level is within the budget
        first_over = min(over)
        within = max(c for c, p in p99_ms.items() if p <= self.budget_ms and c < first_over)
        if first_over - within <= 1:
            return None
        return (within + first_over) // 2
