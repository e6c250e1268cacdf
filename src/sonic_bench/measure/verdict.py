"""A level's verdict, as MLPerf LoadGen gives a run one: VALID when every figure it
reports stands as measured, INVALID with every reason otherwise (pure functions).

A percentile needs enough answers to mean something. LoadGen asks for
n = z^2 p (1 - p) / m^2 with the margin m = (1 - p) / 20 at 99% confidence (24,576
queries for p90, 270,336 for p99); a benchmark of a CPU server measures hundreds, not
hundreds of thousands, so the margin here is half the tail: (1 - p) known within +-50%
at 95% confidence (16 answers for p50, 139 for p90, 292 for p95, 1,522 for p99). A
percentile from fewer answers is replaced by its early-stopping upper bound, the order
statistic below which the true percentile lies with 95% confidence, and marked as such;
the level is then INVALID.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sonic_bench.errors import SonicBenchError

CONFIDENCE = 0.95
TAIL_MARGIN = 0.5  # of (1 - p): the tail's share known within +-50%
DEFAULT_PERCENTILES = (50, 90, 95, 99)
KNOWN_PERCENTILES = (50, 90, 95, 99)  # the steps.csv columns
VALID, INVALID = "VALID", "INVALID"
DURATION_SLACK_S = 1e-3  # spans are differences of unix times: sub-microsecond rounding


def parse_percentiles(text: str) -> tuple[int, ...]:
    """--percentiles 50,90: which latency percentiles a run reports (and is judged on)."""
    try:
        chosen = tuple(sorted({int(p) for p in text.split(",") if p.strip()}))
    except ValueError:
        chosen = ()
    if not chosen or any(p not in KNOWN_PERCENTILES for p in chosen):
        raise SonicBenchError(
            f"--percentiles {text!r}: give some of {','.join(map(str, KNOWN_PERCENTILES))}, "
            "e.g. --percentiles 50,90"
        )
    return chosen


def answers_needed(
    percentile: float, confidence: float = CONFIDENCE, margin: float = TAIL_MARGIN
) -> int:
    """LoadGen's sample size for a percentile: n = z^2 p (1 - p) / (margin (1 - p))^2."""
    p = percentile / 100
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    return math.ceil(z * z * p / ((1 - p) * margin**2))


def early_stopping_bound(
    latencies_ms: np.ndarray, percentile: float, confidence: float = CONFIDENCE
) -> float | None:
    """The smallest order statistic that is at least the true percentile with
    `confidence` (the count below the percentile is binomial); None when even the
    slowest answer is not (too few answers to bound it)."""
    n = len(latencies_ms)
    if n == 0:
        return None
    k = int(stats.binom.ppf(confidence, n, percentile / 100)) + 1  # 1-based rank
    if k > n:
        return None
    return float(np.partition(np.asarray(latencies_ms, dtype=float), k - 1)[k - 1])


def answers_for_a_bound(percentile: float, confidence: float = CONFIDENCE) -> int:
    """The fewest answers whose slowest one bounds the percentile."""
    return math.ceil(math.log(1 - confidence) / math.log(percentile / 100))


@dataclass(frozen=True)
class Validity:
    reasons: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def text(self) -> str:
        return VALID if self.valid else INVALID

    def row(self) -> dict[str, str]:
        return {"verdict": self.text, "verdict_reasons": "; ".join(self.reasons)}

    def explained(self) -> str:
        return self.text if self.valid else f"{INVALID}: {'; '.join(self.reasons)}"


@dataclass(frozen=True)
class LevelEvidence:
    """What a level's verdict rests on, as the measurement recorded it."""

    duration_s: float
    min_duration_s: float
    answers: int
    errors: int
    stable: bool
    failure: str | None = None
    shared_server: bool = False


def _column(p: int) -> str:
    return f"latency_ms_p{p}"


def judge_row(
    row: dict,
    latencies_ms: np.ndarray | None,
    evidence: LevelEvidence,
    percentiles: Sequence[int] = DEFAULT_PERCENTILES,
) -> dict:
    """The row with its verdict: percentiles not reported emptied, those with too few
    answers replaced by their bound (listed in `bounded_percentiles`). `latencies_ms`:
    the level's answered latencies (None when the engine reports aggregates only)."""
    out = dict(row)
    reasons = list(_evidence_reasons(evidence))
    bounded = []
    for p in KNOWN_PERCENTILES:
        if p not in percentiles:
            out[_column(p)] = None
            continue
        needed = answers_needed(p)
        if evidence.answers >= needed:
            continue
        said = f"p{p} from {evidence.answers} answers ({needed:,} needed)"
        if latencies_ms is None:
            reasons.append(f"{said}; no per-request latencies to bound it")
            continue
        bound = early_stopping_bound(latencies_ms, p)
        out[_column(p)] = bound
        bounded.append(f"p{p}")
        if bound is None:
            reasons.append(f"{said}; no bound under {answers_for_a_bound(p)} answers")
        else:
            reasons.append(f"{said}: reported as its {CONFIDENCE:.0%} early-stopping bound")
    out["bounded_percentiles"] = " ".join(bounded)
    out.update(Validity(tuple(reasons)).row())
    return out


def _evidence_reasons(e: LevelEvidence) -> list[str]:
    reasons = []
    if e.failure is not None:
        reasons.append(f"ended early: {e.failure}")
    if e.duration_s + DURATION_SLACK_S < e.min_duration_s:
        reasons.append(f"measured {e.duration_s:.1f} s of its {e.min_duration_s:g} s minimum")
    if not e.answers:
        reasons.append("no request answered")
    if e.errors:
        reasons.append(f"{e.errors} request{'s' if e.errors > 1 else ''} failed")
    if not e.stable:
        reasons.append("not stable")
    if e.shared_server:
        reasons.append("another client shared the server")
    return reasons


def run_verdict(levels: Sequence[tuple[str, str | None, str | None]]) -> Validity:
    """A run is VALID when all its levels are: (label, verdict, reasons) per level; a
    level without a verdict (a run written before verdicts) counts as not VALID."""
    return Validity(
        tuple(
            f"{label}: {why or 'no verdict recorded'}"
            for label, verdict, why in levels
            if verdict != VALID
        )
    )
