"""Drift limits for accuracy runs (the thresholds file's `[accuracy]` table), and the
verdict on a run against them. Absolute limits, no baseline: FP32 served must equal FP32
in-process, a variant may drift as far as its users accept.

[accuracy]
max_abs_diff = 1e-5           # the largest absolute difference of any output value
mean_abs_diff = 1e-6          # the mean absolute difference over all output values
label_change_fraction = 0.0   # samples whose label (argmax) changes
score_disagreement = 0.0      # samples on the other side of the score cut (Michel)
event_count_change = 0        # the largest change of an event's tagged-sample count

An answer returned for the wrong request fails whatever the limits say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sonic_bench.accuracy.drift import AccuracySummary
from sonic_bench.errors import SonicBenchError
from sonic_bench.regress.thresholds import read_thresholds_file

LIMITS = (
    "max_abs_diff",
    "mean_abs_diff",
    "label_change_fraction",
    "score_disagreement",
    "event_count_change",
)


@dataclass(frozen=True)
class AccuracyVerdict:
    figure: str
    value: float
    limit: float | None  # None: a figure that must be zero (mixed-up answers)
    passed: bool


def load_accuracy_limits(path: Path) -> dict[str, float]:
    table = read_thresholds_file(path).get("accuracy")
    if not isinstance(table, dict) or not table:
        raise SonicBenchError(
            f"{path}: no [accuracy] table: an accuracy run is judged on drift limits "
            f"({', '.join(LIMITS)})"
        )
    unknown = set(table) - set(LIMITS)
    if unknown:
        raise SonicBenchError(
            f"{path}: [accuracy] has unknown keys {sorted(unknown)}: use {', '.join(LIMITS)}"
        )
    for key, value in table.items():
        if not isinstance(value, int | float) or value < 0:
            raise SonicBenchError(f"{path}: [accuracy] {key} must be a number from 0 up")
    return {k: float(v) for k, v in table.items()}


def _figures(summary: AccuracySummary) -> dict[str, float]:
    outputs = summary.outputs
    values = sum(o.values for o in outputs)
    mean = sum(o.mean_abs * o.values for o in outputs) / values if values else math.nan
    score = summary.score
    disagreement = score.disagree / score.samples if score and score.samples else math.nan
    return {
        "max_abs_diff": summary.largest_abs,
        "mean_abs_diff": mean,
        "label_change_fraction": summary.label_change_fraction,
        "score_disagreement": disagreement,
        "event_count_change": float(score.max_event_change) if score else math.nan,
    }


def judge_accuracy(summary: AccuracySummary, limits: dict[str, float]) -> list[AccuracyVerdict]:
    """One verdict per limit given (a figure the run does not have cannot pass), and one
    on answers returned for the wrong request."""
    figures = _figures(summary)
    verdicts = [
        AccuracyVerdict(name, figures[name], limit, figures[name] <= limit)
        for name, limit in limits.items()
    ]
    verdicts.append(
        AccuracyVerdict(
            "answers_for_the_wrong_request", len(summary.mixed_up), None, not summary.mixed_up
        )
    )
    return verdicts
