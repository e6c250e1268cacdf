"""`sonic-bench compare A B`: B against A, per configuration and level, with a bootstrap
interval of each ratio and pyperf's word for it ("significant" or "not significant").

The samples a ratio is bootstrapped from are, when both sides repeated the configuration
(`--repeat`, or several jobs) at least MIN_RUNS times, the runs' own figures: that
interval holds the run-to-run variation. Otherwise they come from requests.csv.gz, and
the interval holds only the variation inside a run (and says so): a throughput from time
blocks of each level's measured span (a block bootstrap keeps the requests' serial
correlation), a latency percentile from the answers themselves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sonic_bench.analysis.repeats import configuration_key, configuration_label
from sonic_bench.analysis.runs import LoadedRun, SkippedRun, find_runs, load_run
from sonic_bench.errors import SonicBenchError
from sonic_bench.results.machine import differences

METRICS = ("inferences_per_s", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99")
BLOCKS = 10  # time blocks per level
MIN_RUNS = 3  # runs per side for a between-run bootstrap
RESAMPLES = 2000
SEED = 20261201  # the bootstrap is seeded: the same folders give the same answer


@dataclass(frozen=True)
class Block:
    seconds: float
    inferences: int
    latencies_ms: np.ndarray


@dataclass(frozen=True)
class LevelSamples:
    """One side's evidence for one level: its runs' figures and its time blocks."""

    run_values: dict[str, list[float]] = field(default_factory=dict)  # metric -> per run
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Ratio:
    configuration: str
    load: float
    metric: str
    a: float
    b: float
    ratio: float
    low: float
    high: float
    samples: str  # "runs", "blocks" (of time, inside runs) or "answers" (inside runs)

    @property
    def significant(self) -> bool:
        return not (self.low <= 1.0 <= self.high)

    @property
    def word(self) -> str:
        return "significant" if self.significant else "not significant"

    def as_json(self) -> dict:
        return {**vars(self), "significance": self.word}


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    ratios: list[Ratio]
    provenance: list[str]  # every difference between the two sides' set-ups
    unmatched: list[str]  # configurations only one side measured
    curves: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "ratios": [r.as_json() for r in self.ratios],
            "provenance_differences": self.provenance,
            "unmatched": self.unmatched,
        }


def _sweeps(path: Path) -> list[LoadedRun]:
    runs = []
    for folder in find_runs([path]):
        try:
            run = load_run(folder)
        except SkippedRun:
            continue
        if run.kind == "sweep":
            runs.append(run)
    if not runs:
        raise SonicBenchError(f"{path}: no sweep run folders to compare (give a run or a job)")
    return runs


def _requests(run: LoadedRun) -> pd.DataFrame | None:
    path = run.requests_path
    if path is None:
        return None
    frame = pd.read_csv(path, usecols=["step", "t_recv", "latency_ms", "batch_size", "ok"])
    return frame[frame.ok == 1]


def _unix(text: str) -> float:
    return pd.Timestamp(text).timestamp()


def _blocks(requests: pd.DataFrame, step: int, start: float, end: float) -> list[Block]:
    mine = requests[(requests.step == step) & (requests.t_recv >= start) & (requests.t_recv < end)]
    edges = np.linspace(start, end, BLOCKS + 1)
    index = np.clip(np.searchsorted(edges, mine.t_recv.to_numpy(), side="right") - 1, 0, BLOCKS - 1)
    seconds = (end - start) / BLOCKS
    sizes, latency = mine.batch_size.to_numpy(), mine.latency_ms.to_numpy()
    return [
        Block(seconds, int(sizes[index == i].sum()), latency[index == i]) for i in range(BLOCKS)
    ]


def _level_samples(runs: Sequence[LoadedRun]) -> dict[float, LevelSamples]:
    out: dict[float, LevelSamples] = {}
    for run in runs:
        requests = _requests(run)
        steps = run.steps.dropna(subset=["concurrency"])
        for load, rows in steps.groupby("concurrency"):
            samples = out.setdefault(float(load), LevelSamples())
            for metric in METRICS:
                values = pd.to_numeric(rows[metric], errors="coerce").dropna()
                if len(values):
                    samples.run_values.setdefault(metric, []).append(float(values.mean()))
            if requests is None:
                continue
            for row in rows.itertuples():
                start, end = _unix(row.started_at), _unix(row.ended_at)
                if end > start:
                    samples.blocks.extend(_blocks(requests, int(row.step), start, end))
    return out


def _latencies(blocks: Sequence[Block]) -> np.ndarray:
    return np.concatenate([b.latencies_ms for b in blocks]) if blocks else np.empty(0)


def _quantile(metric: str) -> float:
    return float(metric.rsplit("p", 1)[1])


def _bootstrap_answers(a: np.ndarray, b: np.ndarray, q: float, rng) -> np.ndarray:
    """Percentile ratios of answers drawn again with replacement, in chunks that keep
    the draws a few tens of MB."""
    out = []
    chunk = max(1, 4_000_000 // max(len(a), len(b)))
    for start in range(0, RESAMPLES, chunk):
        n = min(chunk, RESAMPLES - start)
        pa = np.percentile(a[rng.integers(0, len(a), (n, len(a)))], q, axis=1)
        pb = np.percentile(b[rng.integers(0, len(b), (n, len(b)))], q, axis=1)
        out.append(pb / pa)
    return np.concatenate(out)


def _throughput(blocks: Sequence[Block]) -> float:
    """Inferences over the blocks' seconds."""
    return sum(b.inferences for b in blocks) / sum(b.seconds for b in blocks)


def _bootstrap_blocks(a: Sequence[Block], b: Sequence[Block], rng) -> np.ndarray:
    """Throughput ratios of time blocks drawn again with replacement."""

    def rates(blocks: Sequence[Block]) -> np.ndarray:
        inferences = np.array([x.inferences for x in blocks], float)
        seconds = np.array([x.seconds for x in blocks], float)
        picks = rng.integers(0, len(blocks), (RESAMPLES, len(blocks)))
        return inferences[picks].sum(axis=1) / seconds[picks].sum(axis=1)

    return rates(b) / rates(a)


def _bootstrap_runs(a: Sequence[float], b: Sequence[float], rng) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    means_a = a[rng.integers(0, len(a), (RESAMPLES, len(a)))].mean(axis=1)
    means_b = b[rng.integers(0, len(b), (RESAMPLES, len(b)))].mean(axis=1)
    return means_b / means_a


def _ratio(label, load, metric, a: LevelSamples, b: LevelSamples, rng) -> Ratio | None:
    runs_a, runs_b = a.run_values.get(metric, []), b.run_values.get(metric, [])
    if len(runs_a) >= MIN_RUNS and len(runs_b) >= MIN_RUNS:
        ratios, kind = _bootstrap_runs(runs_a, runs_b, rng), "runs"
        va, vb = float(np.mean(runs_a)), float(np.mean(runs_b))
    elif metric == "inferences_per_s" and a.blocks and b.blocks:
        va, vb = _throughput(a.blocks), _throughput(b.blocks)
        ratios, kind = _bootstrap_blocks(a.blocks, b.blocks, rng), "blocks"
    elif (la := _latencies(a.blocks)).size and (lb := _latencies(b.blocks)).size:
        q = _quantile(metric)
        va, vb = float(np.percentile(la, q)), float(np.percentile(lb, q))
        ratios, kind = _bootstrap_answers(la, lb, q, rng), "answers"
    else:
        return None
    if not (math.isfinite(va) and math.isfinite(vb)) or va == 0:
        return None
    finite = ratios[np.isfinite(ratios)]
    low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (math.nan, math.nan)
    return Ratio(label, load, metric, va, vb, vb / va, float(low), float(high), kind)


def _compared_metrics(a: LoadedRun, b: LoadedRun) -> list[str]:
    """Throughput, and the percentiles both runs report (`--percentiles`; all in runs
    from before it): one a run left out had too few answers to stand."""

    def reported(run: LoadedRun) -> set[str]:
        chosen = run.manifest.load.parameters.get("percentiles")
        return {m for m in METRICS if chosen is None or m.endswith(tuple(f"p{p}" for p in chosen))}

    return [m for m in METRICS if m == "inferences_per_s" or m in reported(a) & reported(b)]


def _provenance(a: LoadedRun, b: LoadedRun) -> list[str]:
    found = differences(a.manifest, b.manifest)
    config_a = json.dumps(a.manifest.server.model_config, sort_keys=True)
    config_b = json.dumps(b.manifest.server.model_config, sort_keys=True)
    if config_a != config_b:
        found.append(f"model config of {a.manifest.server.model} differs")
    return found


def _curve(runs: Sequence[LoadedRun]) -> pd.DataFrame:
    steps = pd.concat([r.steps for r in runs]).dropna(subset=["concurrency"])
    return steps.groupby("concurrency").inferences_per_s.agg(["mean", "min", "max"]).reset_index()


def compare_runs(a_path: Path, b_path: Path) -> Comparison:
    side_a, side_b = _sweeps(a_path), _sweeps(b_path)
    group_a: dict[tuple, list[LoadedRun]] = {}
    group_b: dict[tuple, list[LoadedRun]] = {}
    for runs, groups in ((side_a, group_a), (side_b, group_b)):
        for run in runs:
            groups.setdefault(configuration_key(run.manifest), []).append(run)
    rng = np.random.default_rng(SEED)
    ratios, provenance, curves = [], [], {}
    for key in [k for k in group_a if k in group_b]:
        runs_a, runs_b = group_a[key], group_b[key]
        label = configuration_label(runs_a[0].manifest)
        samples_a, samples_b = _level_samples(runs_a), _level_samples(runs_b)
        metrics = _compared_metrics(runs_a[0], runs_b[0])
        for load in sorted(set(samples_a) & set(samples_b)):
            for metric in metrics:
                ratio = _ratio(label, load, metric, samples_a[load], samples_b[load], rng)
                if ratio is not None:
                    ratios.append(ratio)
        curves[label] = (_curve(runs_a), _curve(runs_b))
        for difference in _provenance(runs_a[0], runs_b[0]):
            if difference not in provenance:
                provenance.append(difference)
    unmatched = [
        f"only in {'A' if k in group_a else 'B'}: "
        f"{configuration_label((group_a.get(k) or group_b[k])[0].manifest)}"
        for k in [*group_a, *group_b]
        if (k in group_a) != (k in group_b)
    ]
    if not ratios:
        raise SonicBenchError(
            f"{a_path} and {b_path} share no configuration and level to compare"
            + (f" ({'; '.join(unmatched)})" if unmatched else "")
        )
    return Comparison(str(a_path), str(b_path), ratios, provenance, unmatched, curves)


def comparison_plot(comparison: Comparison, path: Path) -> Path:
    """Both sides' throughput curves, one panel per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(comparison.curves)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.5), squeeze=False)
    for ax, (label, (a, b)) in zip(axes[0], comparison.curves.items(), strict=True):
        for frame, name, colour in ((a, "A", "C0"), (b, "B", "C1")):
            spread = [frame["mean"] - frame["min"], frame["max"] - frame["mean"]]
            ax.errorbar(frame.concurrency, frame["mean"], yerr=spread, fmt="o-", color=colour,
                        label=name, capsize=3)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        ax.set_ylabel("inferences / s")
        ax.set_title(label, fontsize=9)
        ax.legend()
    fig.suptitle(f"A: {comparison.a}\nB: {comparison.b}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
