"""Saturation of a throughput curve (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

KNEE_FRACTION = 0.95


@dataclass(frozen=True)
class Saturation:
    max_inferences_per_s: float
    at_concurrency: float
    knee_concurrency: float  # smallest level reaching 95% of the maximum


def saturation(
    concurrency: Sequence[float], inferences_per_s: Sequence[float]
) -> Saturation | None:
    pairs = sorted(
        (c, t) for c, t in zip(concurrency, inferences_per_s, strict=True) if t == t and c == c
    )
    if not pairs:
        return None
    best_c, best = max(pairs, key=lambda p: p[1])
    knee = next(c for c, t in pairs if t >= KNEE_FRACTION * best)
    return Saturation(best, best_c, knee)


@dataclass(frozen=True)
class BudgetAnswer:
    """The most load whose p99 latency stays within a budget."""

    budget_ms: float
    concurrency: float | None  # None: even the lowest level measured exceeded the budget
    inferences_per_s: float | None
    p99_ms: float | None
    # the level the search stopped at had no p99 (too few answers to bound it, or none):
    # over the budget for all the search knows, and said so rather than called slow
    without_p99_at: float | None = None


def within_budget(
    concurrency: Sequence[float],
    p99_ms: Sequence[float],
    inferences_per_s: Sequence[float],
    budget_ms: float,
) -> BudgetAnswer:
    """The highest level below the lowest one over the budget (perf_analyzer's answer to
    `--latency-threshold` with `--binary-search`); a noisy level above that one does not
    count, since more load is not expected to lower the p99. A p99 of inf: the level
    has none (it counts as over, and the answer names it)."""
    levels = sorted(
        (c, p, t)
        for c, p, t in zip(concurrency, p99_ms, inferences_per_s, strict=True)
        if c == c and p == p
    )
    over = [c for c, p, _ in levels if p > budget_ms]
    first_over = min(over) if over else float("inf")
    without_p99 = next((c for c, p, _ in levels if c == first_over and p == math.inf), None)
    within = [(c, p, t) for c, p, t in levels if p <= budget_ms and c < first_over]
    if not within:
        return BudgetAnswer(budget_ms, None, None, None, without_p99)
    c, p, t = within[-1]
    return BudgetAnswer(budget_ms, c, t, p, without_p99)
