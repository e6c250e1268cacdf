"""What each run says: sweeps' saturation, loadgen knees and speedups, baselines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from sonic_bench.accuracy.drift import AccuracySummary
from sonic_bench.analysis.mva import KNEE_FACTOR, median_absolute_relative_error
from sonic_bench.analysis.prediction import (
    CurvePrediction,
    JobPlan,
    Prediction,
    capacity_from_steps,
    matching_sweep,
    predict,
)
from sonic_bench.analysis.runs import LoadedRun, SkippedRun, request_latency_percentiles
from sonic_bench.analysis.saturation_fit import SaturationResult, analyse_saturation
from sonic_bench.analysis.throughput import (
    BudgetAnswer,
    Saturation,
    saturation,
    within_budget,
)
from sonic_bench.measure.verdict import Validity
from sonic_bench.model.repository import EMTRACKMICHEL, network_of
from sonic_bench.results.machine import differences
from sonic_bench.results.schema import Manifest
from sonic_bench.workload.detector import PATCHES_PER_EVENT


@dataclass(frozen=True)
class Speedup:
    module: float
    total: float
    cpu_module_s: float
    baseline_run: str


SAME_SETTING = 0.10  # baseline rows this close in average batch are one batch setting


@dataclass(frozen=True)
class BaselineSummary:
    run_id: str
    table: pd.DataFrame  # threads, processes, batch_size, inferences_per_s, seconds_per_55k
    manifest: Manifest | None = None
    folder: Path | None = None

    def best(self, batch: float) -> pd.Series | None:
        """The machine's CPU-only reference at the batch nearest `batch`: the fastest
        layout (threads x processes) measured there."""
        rows = self._at(self.table, batch)
        return None if rows.empty else rows.loc[rows.inferences_per_s.idxmax()]

    @staticmethod
    def _at(rows: pd.DataFrame, batch: float) -> pd.DataFrame:
        """The rows of the batch setting nearest `batch`: the layouts' averages of one
        setting differ by a few percent (each process starts on another batch)."""
        if rows.empty:
            return rows
        nearest = rows.batch_size.iloc[(rows.batch_size - batch).abs().argmin()]
        return rows[(rows.batch_size - nearest).abs() <= SAME_SETTING * nearest]

    def inferences_per_s(self, threads: int | None, batch: float) -> float | None:
        """One process of `threads` threads (1: a single grid job), or with None the
        best layout, at the batch nearest `batch`."""
        if threads is None:
            best = self.best(batch)
            return None if best is None else float(best.inferences_per_s)
        one = self.table[(self.table.threads == threads) & (self.table.processes == 1)]
        rows = self._at(one, batch)
        return None if rows.empty else float(rows.inferences_per_s.iloc[0])


@dataclass(frozen=True)
class SweepSummary:
    run: LoadedRun
    saturation: Saturation | None
    baseline_ratio: float | None = None
    warnings: tuple[str, ...] = ()
    budget: BudgetAnswer | None = None  # a --latency-budget sweep's answer

    @property
    def label(self) -> str:
        m = self.run.manifest
        db = "db on" if m.server.dynamic_batching else "db off"
        shm = ", shm" if m.load.shared_memory else ""
        return f"{m.server.model} batch {m.workload.avg_batch_size:.0f}, {db}{shm}"

    @property
    def verdict(self) -> Validity | None:
        """The run's verdict as written; None for a run from before verdicts."""
        m = self.run.manifest
        return None if m.verdict is None else Validity(tuple(m.verdict_reasons))


@dataclass(frozen=True)
class DeviceFigures:
    """The server's GPUs at a sweep's saturation level (Triton's GPU metrics)."""

    concurrency: float
    utilization: float | None  # 0-1, the level's mean over every GPU
    power_w: float | None
    joules_per_1000_inferences: float | None


def _number(row, column: str) -> float | None:
    value = row.get(column) if column in row else None
    return _finite(float(value)) if value is not None and value == value else None


def device_figures(sweep: SweepSummary) -> DeviceFigures | None:
    """GPU utilization, power and energy per 1,000 inferences at saturation; None for a
    server without GPU metrics (the embedded CPU one)."""
    if sweep.saturation is None:
        return None
    steps = sweep.run.steps
    at = steps[steps.concurrency == sweep.saturation.at_concurrency]
    if not len(at):
        return None
    row = at.iloc[0]
    utilization, power = _number(row, "gpu_utilization"), _number(row, "gpu_power_w")
    energy = _number(row, "gpu_energy_j")
    if utilization is None and power is None and energy is None:
        return None
    seconds = (pd.to_datetime(row.ended_at) - pd.to_datetime(row.started_at)).total_seconds()
    served = float(row.inferences_per_s) * seconds if seconds > 0 else 0.0
    per_1000 = 1000 * energy / served if energy is not None and served > 0 else None
    return DeviceFigures(sweep.saturation.at_concurrency, utilization, power, per_1000)


@dataclass(frozen=True)
class AccuracyRunSummary:
    run: LoadedRun
    accuracy: AccuracySummary
    inferences_per_s: float  # served with every answer kept and decoded

    @property
    def precision(self) -> str:
        return precision_of(self.run.manifest)


def precision_of(manifest) -> str:
    """The served model's precision: its config's `precision` parameter (fp32 if none),
    or for the torch compute mode its `torch_dtype`."""
    parameters = manifest.server.model_config.get("parameters") or {}

    def value(key: str) -> str | None:
        return (parameters.get(key) or {}).get("string_value")

    if value("compute") == "torch":
        return f"torch-{value('torch_dtype') or 'fp32'}"
    return value("precision") or "fp32"


def summarize_accuracy(run: LoadedRun) -> AccuracyRunSummary:
    if run.accuracy is None:
        raise SkippedRun(f"{run.folder}: no accuracy.json (the accuracy run did not finish)")
    steps = run.steps
    seconds = (pd.to_datetime(steps.ended_at) - pd.to_datetime(steps.started_at)).dt.total_seconds()
    served = (steps.inferences_per_s * seconds).sum()
    rate = float(served / seconds.sum()) if seconds.sum() > 0 else math.nan
    return AccuracyRunSummary(run, run.accuracy, rate)


@dataclass(frozen=True)
class VariantRow:
    """One served model beside FP32: its speed (from its sweep) and its drift."""

    model: str
    precision: str
    max_inferences_per_s: float | None
    ratio_to_fp32: float | None
    tail_at_knee: tuple[int, float] | None  # (percentile, ms): p99, else the highest reported
    largest_abs: float
    label_change_fraction: float
    score_agreement: float | None
    events_changed: str


def _setting(manifest) -> tuple:
    return (manifest.workload.batch_size_setting, manifest.server.dynamic_batching)


def _is_fp32_network(manifest, setting: tuple) -> bool:
    """A sweep of a model that runs its network in FP32 (not the zero-compute stand-in)."""
    parameters = manifest.server.model_config.get("parameters") or {}
    computes = (parameters.get("compute") or {}).get("string_value", "onnx")
    return (
        precision_of(manifest) == "fp32" and computes != "zeros" and _setting(manifest) == setting
    )


def _best(sweeps: list[SweepSummary]) -> float | None:
    """The last such sweep's saturated throughput."""
    if not sweeps or sweeps[-1].saturation is None:
        return None
    return sweeps[-1].saturation.max_inferences_per_s


def _tail_at_knee(sweep: SweepSummary) -> tuple[int, float] | None:
    """The p99 at the knee, or the highest percentile the sweep reported there."""
    if sweep.saturation is None:
        return None
    steps = sweep.run.steps
    at = steps[steps.concurrency == sweep.saturation.knee_concurrency]
    for p in (99, 95, 90, 50):
        value = _finite(float(at[f"latency_ms_p{p}"].iloc[0])) if len(at) else None
        if value is not None:
            return p, value
    return None


def variant_rows(
    sweeps: list[SweepSummary], accuracies: list[AccuracyRunSummary]
) -> list[VariantRow]:
    """Each accuracy run's model with its sweep (same batch setting and batching), its
    saturated throughput over the FP32 model's of the same setting."""
    rows = []
    for a in accuracies:
        setting = _setting(a.run.manifest)
        model = a.run.manifest.server.model
        own = [s for s in sweeps if s.run.manifest.server.model == model]
        own = [s for s in own if _setting(s.run.manifest) == setting] or own
        fp32 = [s for s in sweeps if _is_fp32_network(s.run.manifest, setting)]
        best = _best(own)
        reference = _best(fp32)
        score = a.accuracy.score
        rows.append(
            VariantRow(
                model,
                a.precision,
                best,
                best / reference if best and reference else None,
                _tail_at_knee(own[-1]) if own else None,
                a.accuracy.largest_abs,
                a.accuracy.label_change_fraction,
                score.agreement if score else None,
                f"{score.events_changed}/{score.events}" if score else "-",
            )
        )
    return rows


@dataclass(frozen=True)
class LoadgenSummary:
    run: LoadedRun
    levels: pd.DataFrame  # users, events, module median/mean, total median
    other_s: float
    preprocess_s: float
    saturation: SaturationResult | None
    speedup: Speedup | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    prediction: Prediction | None = None  # from the sweep (and baseline) it came from

    @property
    def label(self) -> str:
        m = self.run.manifest
        db = "db on" if m.server.dynamic_batching else "db off"
        scale = f"scale {m.workload.event_scale:g}"
        return f"{m.server.model} batch {m.workload.avg_batch_size:.0f}, {db}, {scale}"

    @property
    def served_max_inferences_per_s(self) -> float | None:
        """The most the server served in any of the run's levels (all users together)."""
        served = pd.to_numeric(self.run.steps.get("inferences_per_s"), errors="coerce")
        return float(served.max()) if served is not None and served.notna().any() else None

    def capacity_check(self) -> dict[str, float] | None:
        """Did the server give the jobs the throughput the sweep measured? The knee
        scales with it (N_sat = X t_ideal / P), so the model is asked again with the
        throughput the run saw."""
        served, p = self.served_max_inferences_per_s, self.prediction
        if served is None or p is None:
            return None
        return {
            "served_max_inferences_per_s": served,
            "ratio_to_sweep": served / p.capacity.inferences_per_s.value,
            "n_sat_at_served": p.n_sat_at(served),
        }

    @cached_property
    def curve(self) -> CurvePrediction | None:
        """The queueing network's curve over the run's user counts (solved once)."""
        if self.prediction is None or self.levels.empty:
            return None
        return self.prediction.curve(math.ceil(self.levels.users.max()))

    def curve_check(self) -> dict | None:
        """The measured mean module time of every step against the MVA curve and
        against the paper's asymptotes: the ratio at each step, the median absolute
        relative error of each, and the knee (module time KNEE_FACTOR x that of the
        fewest users) read off the curve and off the measurements."""
        curve, p = self.curve, self.prediction
        if curve is None or p is None:
            return None
        users = self.levels.users.to_numpy(dtype=float)
        measured = self.levels.module_mean_s.to_numpy(dtype=float)
        central, low, high = curve.at(users)
        asymptotes = p.module_time(users)
        return {
            "steps": [
                {
                    "users": float(u),
                    "measured_module_s": float(m),
                    "mva_module_s": float(c),
                    "mva_low_s": float(lo),
                    "mva_high_s": float(hi),
                    "asymptotes_module_s": float(a),
                    "measured_over_mva": float(m / c),
                }
                for u, m, c, lo, hi, a in zip(
                    users, measured, central, low, high, asymptotes, strict=True
                )
            ],
            "mare_mva": median_absolute_relative_error(measured, central),
            "mare_asymptotes": median_absolute_relative_error(measured, asymptotes),
            "knee_mva": curve.knee,
            "knee_measured": measured_knee(users, measured),
            "knee_factor": KNEE_FACTOR,
        }

    def measured_over_predicted(self) -> dict[str, float | None]:
        """Measured knee, flat module time and slope as ratios to the prediction."""
        p, r = self.prediction, self.saturation
        if p is None or r is None:
            return {}
        pairs = {
            "n_sat": (r.n_sat if r.saturated else None, p.n_sat.value),
            "robust_n_sat": (r.robust_n_sat, p.n_sat.value),
            "flat_module_s": (r.flat_module_s, p.flat_module_s),
            "slope_s_per_client": (r.slope_s_per_client, p.slope_s_per_client),
        }
        return {k: (m / q if m is not None and q else None) for k, (m, q) in pairs.items()}


def measured_knee(users: np.ndarray, module_s: np.ndarray) -> float | None:
    """Where measured module times first reach KNEE_FACTOR x that of the fewest users,
    interpolated between the steps on either side; None if they never do."""
    order = np.argsort(users)
    users, module_s = users[order], module_s[order]
    target = KNEE_FACTOR * module_s[0]
    above = np.nonzero(module_s >= target)[0]
    if not above.size or above[0] == 0:
        return None
    i = int(above[0])
    lo, hi = module_s[i - 1], module_s[i]
    return float(users[i - 1] + (target - lo) / (hi - lo) * (users[i] - users[i - 1]))


def summarize_baseline(run: LoadedRun) -> BaselineSummary:
    steps = run.steps
    processes = pd.to_numeric(steps.get("processes"), errors="coerce")
    table = pd.DataFrame(
        {
            "threads": steps.concurrency.astype(int),
            # Runs before layouts measured one process at a time.
            "processes": processes.fillna(1).astype(int) if processes is not None else 1,
            "batch_size": steps.batch_size.astype(float),
            "inferences_per_s": steps.inferences_per_s.astype(float),
            "verdict": steps.get("verdict"),
        }
    )
    table["seconds_per_55k"] = PATCHES_PER_EVENT / table.inferences_per_s
    return BaselineSummary(run.run_id, table, run.manifest, run.folder)


def summarize_sweep(run: LoadedRun, baselines: list[BaselineSummary]) -> SweepSummary:
    closed = run.steps.dropna(subset=["concurrency"])
    sat = saturation(list(closed.concurrency), list(closed.inferences_per_s))
    ratio = None
    warnings = list(run.notes)
    if sat and baselines and runs_the_baselines_network(run.manifest):
        baseline = nearest_baseline(run, baselines)
        best = baseline.best(run.manifest.workload.avg_batch_size)
        if best is not None and best.inferences_per_s > 0:
            ratio = sat.max_inferences_per_s / float(best.inferences_per_s)
            warnings += unfair_reference_warnings(run, baseline, best, ratio)
        warnings += set_up_differences(run, baseline)
    return SweepSummary(run, sat, ratio, tuple(warnings), _budget(run, closed))


def nearest_baseline(run: LoadedRun, baselines: list[BaselineSummary]) -> BaselineSummary:
    """The run's own job's baseline (the same folder of runs) when several jobs are
    analysed together, else the one measured closest in time to it: the machine of an
    hour ago is not the machine now."""

    def distance(b: BaselineSummary) -> tuple[bool, float]:
        other_job = b.folder is None or b.folder.parent != run.folder.parent
        if b.manifest is None:
            return other_job, math.inf
        return other_job, abs(_unix(b.manifest.started_at) - _unix(run.manifest.started_at))

    return min(reversed(baselines), key=distance)


def _unix(text: str) -> float:
    return pd.Timestamp(text).timestamp()


# Served / CPU-only above this says more about the reference than about the server: a
# server on the same CPU runs the same onnxruntime, so it can at best match the
# machine's best CPU-only layout.
FAIR_RATIO = 1.05


def runs_the_baselines_network(manifest: Manifest) -> bool:
    """The baseline runs EmTrackMichelId for real: a sweep of another network, or of the
    zero-compute calibration model, has nothing to be compared with there."""
    config = manifest.server.model_config
    if ((config.get("parameters") or {}).get("compute") or {}).get("string_value") == "zeros":
        return False
    return network_of(config) in (None, EMTRACKMICHEL)


def unfair_reference_warnings(
    run: LoadedRun, baseline: BaselineSummary, best: pd.Series, ratio: float
) -> list[str]:
    if ratio <= FAIR_RATIO:
        return []
    why = [
        f"its best layout measured was {int(best.threads)} thread(s) x "
        f"{int(best.processes)} process(es), {best.inferences_per_s:,.0f} inf/s"
    ]
    if best.get("verdict") not in (None, "VALID") and best.get("verdict") == best.get("verdict"):
        why.append(f"that level is {best.verdict}")
    layouts = {
        (int(t), int(p))
        for t, p in zip(baseline.table.threads, baseline.table.processes, strict=True)
    }
    cores = run.manifest.machine.cores
    missing = [f"{t}x{p}" for t, p in ((1, cores), (cores, 1)) if (t, p) not in layouts]
    if missing:
        why.append(f"layouts not measured: {', '.join(missing)} (--layouts)")
    if baseline.manifest is not None and baseline.manifest.machine != run.manifest.machine:
        why.append("it ran on another machine")
    return [
        f"served / CPU-only {ratio:.2f} at batch ~{run.manifest.workload.avg_batch_size:.0f} is "
        f"above {FAIR_RATIO}: the reference ({baseline.run_id}) may be unfair: " + "; ".join(why)
    ]


def _budget(run: LoadedRun, closed: pd.DataFrame) -> BudgetAnswer | None:
    budget = run.manifest.load.parameters.get("latency_budget_ms")
    if budget is None:
        return None
    return within_budget(
        list(closed.concurrency),
        list(closed.latency_ms_p99.fillna(math.inf)),
        list(closed.inferences_per_s),
        float(budget),
    )


def set_up_differences(run: LoadedRun, baseline: BaselineSummary) -> list[str]:
    """A ratio to a baseline measured on another set-up says as much."""
    if baseline.manifest is None:
        return []
    found = differences(run.manifest, baseline.manifest)
    if not found:
        return []
    return [f"compared with baseline {baseline.run_id}, which differs in: " + "; ".join(found)]


def summarize_loadgen(
    run: LoadedRun, baselines: list[BaselineSummary], sweeps: list[LoadedRun] = ()
) -> LoadgenSummary:
    events = run.events
    if events is None or events.empty:
        raise SkippedRun(f"{run.folder}: no finished events (events.csv missing or empty)")
    ok = steady_events(events[events.get("failed_requests", 0) == 0], run.steps)
    if ok.empty:
        raise SkippedRun(f"{run.folder}: no event ran wholly inside a load level")
    levels = (
        ok.groupby("users")
        .agg(
            events=("module_s", "size"),
            module_median_s=("module_s", "median"),
            module_mean_s=("module_s", "mean"),
            total_median_s=("total_s", "median"),
        )
        .reset_index()
    )
    levels = _with_request_latencies(run, levels)
    parameters = run.manifest.load.parameters
    other = float(ok.other_s.mean())
    preprocess = float(parameters.get("preprocess_s_per_event", 0.0))
    warnings: list[str] = list(run.notes)
    result = None
    if len(levels) >= 4:
        result = analyse_saturation(ok.users.to_numpy(), ok.module_s.to_numpy(), other)
        warnings += result.warnings
    else:
        warnings.append(f"only {len(levels)} user levels with events: no knee can be fitted")
    flat = result.flat_module_s if result else float(levels.module_median_s.iloc[0])
    speedup = _speedup(run, baselines, flat, other, preprocess)
    if speedup is not None:
        warnings += set_up_differences(run, baselines[-1])
    prediction = predicted_for(run, baselines, sweeps)  # its warnings stay its own
    return LoadgenSummary(
        run, levels, other, preprocess, result, speedup, tuple(warnings), prediction
    )


def predicted_for(
    run: LoadedRun, baselines: list[BaselineSummary], sweeps: list[LoadedRun]
) -> Prediction | None:
    """The paper's model fed with the sweep (and baseline) that match a Locust run."""
    m = run.manifest
    if "requests_per_event" not in m.load.parameters:
        return None  # written by a tool that did not record its jobs' events
    plan = JobPlan.of_run(m)
    sweep = matching_sweep(sweeps, m.server.model, m.workload.batch_size_setting, plan.protocol)
    if sweep is None:
        return None
    single = baselines[-1].inferences_per_s(1, m.workload.avg_batch_size) if baselines else None
    return predict(
        capacity_from_steps(sweep.steps, sweep.manifest),
        plan,
        single,
        baselines[-1].run_id if single else None,
    )


WARM_UP_FRACTION = 1 / 3


def steady_events(events: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Events of each level in its steady state: started after the level began (not
    carried over from fewer users) and not among the first third to start (users that
    were just added start together)."""
    if "started_at" not in steps or steps.started_at.isna().all():
        return events
    starts = pd.to_datetime(steps.started_at, utc=True, format="ISO8601").astype("int64") / 1e9
    begin = dict(zip(steps.step, starts, strict=True))
    inside = events[events.t_start >= events.step.map(begin)]
    kept = []
    for _, level in inside.groupby("step"):
        level = level.sort_values("t_start")
        skip = int(len(level) * WARM_UP_FRACTION) if len(level) >= 6 else 0
        kept.append(level.iloc[skip:])
    return pd.concat(kept) if kept else inside


def _with_request_latencies(run: LoadedRun, levels: pd.DataFrame) -> pd.DataFrame:
    """Per user level, the client-side request latencies from requests.csv.gz."""
    if run.requests_path is None:
        return levels
    requests = request_latency_percentiles(run.requests_path)
    users = run.steps[["step", "concurrency"]].rename(columns={"concurrency": "users"})
    per_level = (
        requests.merge(users, on="step")
        .groupby("users", as_index=False)
        .agg(request_p50_ms=("p50_ms", "median"), request_p99_ms=("p99_ms", "max"))
    )
    return levels.merge(per_level, on="users", how="left")


def _speedup(run: LoadedRun, baselines, flat: float, other: float, preprocess: float):
    if not baselines:
        return None
    workload = run.manifest.workload
    single = baselines[-1].inferences_per_s(1, workload.avg_batch_size)
    if not single:
        return None
    cpu_module = workload.patches_per_event / single + preprocess
    return Speedup(
        module=cpu_module / flat,
        total=(other + cpu_module) / (other + flat),
        cpu_module_s=cpu_module,
        baseline_run=baselines[-1].run_id,
    )


def _finite(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


def replica_levels(run) -> list[dict]:
    """Each replica's part of each level of a run through a gateway, with the level's
    concurrency: what the report's replica table and `analyze --json` show."""
    if run.replicas is None or run.replicas.empty:
        return []
    load = dict(zip(run.steps["step"], run.steps["concurrency"], strict=False))
    rows = []
    for row in run.replicas.to_dict(orient="records"):
        rows.append(
            {
                "step": int(row["step"]),
                "concurrency": _finite(load.get(row["step"])),
                "replica": row["replica"],
                "inferences_per_s": _finite(row.get("inferences_per_s")),
                "share": _finite(row.get("share")),
                "server_batch_avg": _finite(row.get("server_batch_avg")),
                "reachable": bool(row.get("reachable", True)),
            }
        )
    return rows


def to_json(summary) -> dict:
    run = summary.run if hasattr(summary, "run") else None
    if isinstance(summary, BaselineSummary):
        levels = summary.table.to_dict(orient="records")
        m = summary.manifest
        return {
            "run_id": summary.run_id,
            "kind": "baseline",
            "levels": levels,
            "verdict": m.verdict if m else None,
            "verdict_reasons": list(m.verdict_reasons) if m else [],
        }
    out = {"run_id": run.run_id, "kind": run.kind, "status": run.status}
    if isinstance(summary, AccuracyRunSummary):
        out["precision"] = summary.precision
        out["inferences_per_s"] = _finite(summary.inferences_per_s)
        out["accuracy"] = summary.accuracy.to_dict()
        out["warnings"] = list(run.manifest.warnings)
    if isinstance(summary, SweepSummary):
        sat = summary.saturation
        out["throughput"] = {
            "max_inferences_per_s": _finite(sat.max_inferences_per_s) if sat else None,
            "at_concurrency": _finite(sat.at_concurrency) if sat else None,
            "knee_concurrency": _finite(sat.knee_concurrency) if sat else None,
            "ratio_to_in_process": _finite(summary.baseline_ratio),
        }
        if summary.budget is not None:
            out["latency_budget"] = vars(summary.budget)
        if (devices := device_figures(summary)) is not None:
            out["gpu_at_saturation"] = vars(devices)
        out["warnings"] = list(summary.warnings)
        out["verdict"] = summary.verdict.text if summary.verdict else None
        out["verdict_reasons"] = list(summary.verdict.reasons) if summary.verdict else []
        out["levels"] = level_verdicts(run.steps)
        if run.replicas is not None:
            out["replicas"] = replica_levels(run)
    if isinstance(summary, LoadgenSummary):
        r = summary.saturation
        out["saturation"] = {
            "saturated": bool(r.saturated) if r else False,
            "n_sat": _finite(r.n_sat) if r else None,
            "n_sat_low": _finite(r.n_sat_low) if r else None,
            "n_sat_high": _finite(r.n_sat_high) if r else None,
            "flat_module_s": _finite(r.flat_module_s) if r else None,
            "slope_s_per_client": _finite(r.slope_s_per_client) if r else None,
            "robust_n_sat": _finite(r.robust_n_sat) if r else None,
            "consistency": _finite(r.consistency) if r else None,
        }
        if summary.speedup:
            out["speedup"] = {"module": summary.speedup.module, "total": summary.speedup.total}
        if summary.prediction:
            curve = summary.curve
            out["prediction"] = prediction_json(summary.prediction, curve)
            out["prediction"]["measured_over_predicted"] = summary.measured_over_predicted()
            out["prediction"]["during_run"] = summary.capacity_check()
            out["prediction"]["measured_against_curve"] = summary.curve_check()
        out["warnings"] = list(summary.warnings)
    return out


def level_verdicts(steps: pd.DataFrame) -> list[dict]:
    """Each level's load, verdict, reasons and bounded percentiles, as steps.csv has them."""

    def text(value) -> str | None:
        return None if value is None or value != value else str(value)

    return [
        {
            "concurrency": _finite(row.get("concurrency")),
            "rate": _finite(row.get("rate")),
            "verdict": text(row.get("verdict")),
            "reasons": [r for r in (text(row.get("verdict_reasons")) or "").split("; ") if r],
            "bounded_percentiles": (text(row.get("bounded_percentiles")) or "").split(),
        }
        for row in steps.to_dict(orient="records")
    ]


def prediction_json(p: Prediction, curve: CurvePrediction | None = None) -> dict:
    """The prediction as JSON; `curve` (the queueing network's, when it could be fed)
    goes under "curve", or why not under "curve_problem"."""
    c = p.capacity
    return {
        "curve": curve.as_json() if curve is not None else None,
        "curve_problem": p.curve_problem(),
        "n_sat": p.n_sat.value,
        "n_sat_low": p.n_sat.low,
        "n_sat_high": p.n_sat.high,
        "flat_module_s": p.flat_module_s,
        "slope_s_per_client": p.slope_s_per_client,
        "t_ideal_s": p.t_ideal_s,
        "module_speedup": p.module_speedup,
        "total_speedup": p.total_speedup,
        "inputs": {
            "sweep_run": c.run_id,
            "baseline_run": p.baseline_run,
            "inferences_per_s": vars(c.inferences_per_s),
            "request_latency_s": vars(c.request_latency_s),
            "latency_concurrency": c.latency_concurrency,
            "protocol": c.protocol,
            "other_s": p.plan.other_s,
            "preprocess_s": p.plan.preprocess_s,
            "requests_per_event": p.plan.requests,
            "patches_per_event": p.plan.patches,
        },
        "warnings": list(p.warnings),
    }


@dataclass(frozen=True)
class StoryRow:
    """One batch setting with dynamic batching on or off: the paper's standalone server
    beside its CPU-only baseline (Sec. 3.1-3.2)."""

    batch_setting: int
    avg_batch: float
    dynamic_batching: bool
    max_inferences_per_s: float
    at_concurrency: float
    knee_concurrency: float
    ratio_to_in_process: float | None
    executed_batch: float  # Triton's mean executed batch at saturation
    stable_levels: str  # e.g. "4/4"
    valid_levels: str = "-"  # VALID levels of all, e.g. "4/4"; "-" before verdicts


def _valid_levels(steps: pd.DataFrame) -> str:
    verdicts = steps.get("verdict")
    if verdicts is None or verdicts.isna().all():
        return "-"
    return f"{int((verdicts == 'VALID').sum())}/{len(steps)}"


def standalone_story(sweeps: list[SweepSummary]) -> list[StoryRow]:
    """Per batch setting, dynamic batching on then off: where each saturates, how far it
    is from in-process inference, and how large the batches Triton executed were. The
    FP32 network's sweeps only: a variant or the zero-compute model is another story."""
    rows = []
    for s in sweeps:
        if s.saturation is None or not _is_fp32_network(s.run.manifest, None):
            continue
        steps, m = s.run.steps, s.run.manifest
        at = steps[steps.concurrency == s.saturation.at_concurrency]
        stable = steps.stable.astype(str).str.lower().isin(["true", "1"])
        rows.append(
            StoryRow(
                batch_setting=m.workload.first_setting,
                avg_batch=m.workload.avg_batch_size,
                dynamic_batching=m.server.dynamic_batching,
                max_inferences_per_s=s.saturation.max_inferences_per_s,
                at_concurrency=s.saturation.at_concurrency,
                knee_concurrency=s.saturation.knee_concurrency,
                ratio_to_in_process=s.baseline_ratio,
                executed_batch=float(at.server_batch_avg.iloc[0]) if len(at) else math.nan,
                stable_levels=f"{int(stable.sum())}/{len(steps)}",
                valid_levels=_valid_levels(steps),
            )
        )
    return sorted(rows, key=lambda r: (r.batch_setting, not r.dynamic_batching))
