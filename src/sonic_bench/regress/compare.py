"""Judging a run against a baseline, metric by metric and level by level.

For each (metric, level) the trials of both sides are compared by their medians: the
relative change, a bootstrap 95% interval for it, and a one-sided Mann-Whitney test
that the run is worse. A regression is a change worse than the tolerance that is also
significant: noise alone does not fail, and a tiny real change does not either.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import stats

from sonic_bench.regress.samples import IDENTITY, RunSamples
from sonic_bench.regress.thresholds import Threshold

MIN_TRIALS = 4  # fewer cannot reach 5% significance in a one-sided rank test
BOOTSTRAP = 2000
BATCH_MATCH = 0.05  # average batch sizes within 5% are the same workload


class Outcome(IntEnum):
    PASS = 0
    REGRESSION = 1
    CANNOT_JUDGE = 2


@dataclass(frozen=True)
class Verdict:
    metric: str
    level: float | None
    outcome: Outcome
    change: float | None  # relative change of the median, run vs baseline
    low: float | None
    high: float | None
    p_value: float | None
    tolerance: float
    direction: str
    reason: str = ""


def mismatch(run: RunSamples, baseline: RunSamples) -> list[str]:
    """What makes the two incomparable (empty when they compare like with like)."""
    differences = [
        f"{key}: run {run.identity.get(key)!r}, baseline {baseline.identity.get(key)!r}"
        for key in IDENTITY
        if run.identity.get(key) != baseline.identity.get(key)
    ]
    if abs(run.avg_batch_size / baseline.avg_batch_size - 1) > BATCH_MATCH:
        differences.append(
            f"average batch: run {run.avg_batch_size:.0f}, baseline {baseline.avg_batch_size:.0f}"
        )
    return differences


def _interval(run: np.ndarray, base: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    a = np.median(rng.choice(run, (BOOTSTRAP, len(run))), axis=1)
    b = np.median(rng.choice(base, (BOOTSTRAP, len(base))), axis=1)
    ratios = a / b - 1
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def _cannot_judge(threshold: Threshold, level: float | None, reason: str) -> Verdict:
    return Verdict(
        threshold.metric,
        level,
        Outcome.CANNOT_JUDGE,
        None,
        None,
        None,
        None,
        threshold.tolerance,
        threshold.direction,
        reason,
    )


def judge(threshold: Threshold, level: float, run: list[float], base: list[float]) -> Verdict:
    if len(run) < MIN_TRIALS or len(base) < MIN_TRIALS:
        return _cannot_judge(
            threshold,
            level,
            f"too few trials (run {len(run)}, baseline {len(base)}; need {MIN_TRIALS}: "
            "sweep --repeat)",
        )
    a, b = np.asarray(run, float), np.asarray(base, float)
    change = float(np.median(a) / np.median(b) - 1)
    low, high = _interval(a, b)
    worse = "less" if threshold.direction == "higher" else "greater"
    p_value = float(stats.mannwhitneyu(a, b, alternative=worse).pvalue)
    degradation = -change if threshold.direction == "higher" else change
    regression = degradation > threshold.tolerance and p_value < threshold.alpha
    return Verdict(
        threshold.metric,
        level,
        Outcome.REGRESSION if regression else Outcome.PASS,
        change,
        low,
        high,
        p_value,
        threshold.tolerance,
        threshold.direction,
        "worse beyond tolerance" if regression else "",
    )


def compare(run: RunSamples, baseline: RunSamples, thresholds: list[Threshold]) -> list[Verdict]:
    verdicts = []
    for threshold in thresholds:
        mine, theirs = run.samples(threshold), baseline.samples(threshold)
        levels = sorted(set(mine) | set(theirs))
        if threshold.levels is not None:
            missing = [lv for lv in threshold.levels if lv not in mine or lv not in theirs]
            verdicts += [
                _cannot_judge(threshold, lv, "level missing from the run or the baseline")
                for lv in missing
            ]
            levels = [lv for lv in levels if lv not in missing]
        if not levels:
            reason = "no values (a normalised metric needs sweep --reference)"
            verdicts.append(_cannot_judge(threshold, None, reason))
        for level in levels:
            verdicts.append(judge(threshold, level, mine.get(level, []), theirs.get(level, [])))
    return verdicts


def overall(verdicts: list[Verdict]) -> Outcome:
    if any(v.outcome is Outcome.REGRESSION for v in verdicts):
        return Outcome.REGRESSION
    if any(v.outcome is Outcome.CANNOT_JUDGE for v in verdicts):
        return Outcome.CANNOT_JUDGE
    return Outcome.PASS
