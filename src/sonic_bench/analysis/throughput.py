"""Saturation of a throughput curve (pure functions)."""

from __future__ import annotations

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
