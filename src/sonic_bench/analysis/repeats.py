"""Whole sweeps repeated (`sweep --repeat N`, or the same job run again): per level the
mean, the 95% t-interval and the coefficient of variation of each metric, as AIPerf's
`--num-profile-runs` reports them. Runs of one configuration are grouped by what they
measured (model, transport, batch, dynamic batching, levels), whichever job wrote them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sonic_bench.results.schema import Manifest

METRICS = (
    "inferences_per_s",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p95",
    "latency_ms_p99",
)


@dataclass(frozen=True)
class Spread:
    """Samples of one figure: mean, 95% t-interval, coefficient of variation."""

    n: int
    mean: float
    low: float
    high: float
    cv: float | None  # sample standard deviation / mean

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
        if x.size == 0:
            return None
        mean = float(x.mean())
        if x.size == 1:
            return cls(1, mean, math.nan, math.nan, None)
        sd = float(x.std(ddof=1))
        half = float(stats.t.ppf(0.975, x.size - 1)) * sd / math.sqrt(x.size)
        return cls(int(x.size), mean, mean - half, mean + half, sd / mean if mean else None)

    def as_json(self) -> dict:
        def finite(v):
            return v if v is not None and math.isfinite(v) else None

        return {
            "n": self.n,
            "mean": self.mean,
            "ci95_low": finite(self.low),
            "ci95_high": finite(self.high),
            "cv": self.cv,
        }


@dataclass(frozen=True)
class RepeatedLevel:
    load: float
    metrics: dict[str, Spread]


@dataclass(frozen=True)
class RepeatedConfiguration:
    label: str
    runs: tuple[str, ...]
    levels: tuple[RepeatedLevel, ...]
    saturated: Spread | None  # each run's highest throughput

    def as_json(self) -> dict:
        return {
            "configuration": self.label,
            "runs": list(self.runs),
            "saturated_inferences_per_s": self.saturated.as_json() if self.saturated else None,
            "levels": [
                {"load": lv.load, **{k: s.as_json() for k, s in lv.metrics.items()}}
                for lv in self.levels
            ],
        }


def configuration_key(m: Manifest) -> tuple:
    """What makes two sweeps measurements of the same thing."""
    w, load = m.workload, m.load
    return (
        m.server.model,
        m.server.protocol,
        load.shared_memory,
        load.mode,
        tuple(load.levels),
        str(w.batch_size_setting),
        str(w.inputs.get("batch_sizes")),
        m.server.dynamic_batching,
        w.uniform_batches,
        load.parameters.get("engine"),
    )


def configuration_label(m: Manifest) -> str:
    db = "db on" if m.server.dynamic_batching else "db off"
    shm = ", shm" if m.load.shared_memory else ""
    return (
        f"{m.server.model} batch ~{m.workload.avg_batch_size:.0f}, {db}, {m.server.protocol}{shm}"
    )


def _loads(steps: pd.DataFrame) -> pd.Series:
    return steps.concurrency.fillna(steps.get("rate"))


def repeated_configurations(runs: Sequence) -> list[RepeatedConfiguration]:
    """Configurations measured more than once (several runs, or trials inside one)."""
    groups: dict[tuple, list] = {}
    for run in runs:
        groups.setdefault(configuration_key(run.manifest), []).append(run)
    out = []
    for members in groups.values():
        steps = pd.concat([r.steps.assign(_run=r.run_id) for r in members], ignore_index=True)
        steps["_load"] = _loads(steps)
        if steps.groupby("_load").size().max() < 2:
            continue
        levels = []
        for load, rows in steps.groupby("_load"):
            metrics = {}
            for metric in METRICS:
                values = pd.to_numeric(rows.get(metric), errors="coerce").dropna()
                if (spread := Spread.of(list(values))) is not None:
                    metrics[metric] = spread
            levels.append(RepeatedLevel(float(load), metrics))
        per_run = steps.groupby(["_run", "_load"]).inferences_per_s.mean().groupby("_run").max()
        out.append(
            RepeatedConfiguration(
                configuration_label(members[0].manifest),
                tuple(r.run_id for r in members),
                tuple(levels),
                Spread.of(list(per_run)) if len(members) > 1 else None,
            )
        )
    return out
