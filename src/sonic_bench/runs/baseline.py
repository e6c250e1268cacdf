"""The CPU-only baseline as one library call: in-process onnxruntime in each layout
(threads x processes) and batch setting, each judged as a sweep's level, written as a
`baseline` run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.baseline import DEFAULT_SESSION_BATCH
from sonic_bench.measure.cpu_only import (
    CpuOnlyResult,
    Layout,
    default_layouts,
    hooks_window,
    measure_layout,
)
from sonic_bench.measure.level import LevelHooks, MeasurementSettings
from sonic_bench.measure.stats import summarize_latencies
from sonic_bench.measure.verdict import LevelEvidence, Validity, judge_row, run_verdict
from sonic_bench.measure.windows import Stability
from sonic_bench.model.emtrackmichel import DEFAULT_SEED as MODEL_SEED
from sonic_bench.model.emtrackmichel import model_bytes
from sonic_bench.results.manifest import new_manifest
from sonic_bench.results.schema import (
    LoadInfo,
    Manifest,
    ServerInfo,
    WorkloadInfo,
    check_label,
    iso_utc,
)
from sonic_bench.results.store import RunWriter
from sonic_bench.workload.event import DEFAULT_SEED as WORKLOAD_SEED
from sonic_bench.workload.pool import BatchPool, simulated_pool

# The sweep's main-job windows: a warm-up left out, then windows until three agree.
BASELINE_SETTINGS = MeasurementSettings(window_s=2.0, warmup_s=2.0, max_windows=8)


@dataclass(frozen=True)
class BaselinePlan:
    settings: tuple[int, ...]  # batch settings
    layouts: tuple[Layout, ...] = field(default_factory=default_layouts)
    measurement: MeasurementSettings = BASELINE_SETTINGS
    percentiles: tuple[int, ...] = (50,)
    session_batch: int = DEFAULT_SESSION_BATCH
    seed: int = WORKLOAD_SEED
    results: Path = Path("results")
    label: str = "baseline"

    def __post_init__(self) -> None:
        check_label(self.label)
        if not self.settings:
            raise SonicBenchError("--batch is empty: give small, large or a number")
        if not self.layouts:
            raise SonicBenchError("--layouts is empty: give e.g. 1x1,Nx1,1xN")


@dataclass(frozen=True)
class BaselineRun:
    folder: Path
    results: tuple[CpuOnlyResult, ...]
    rows: tuple[dict, ...]

    @property
    def verdict(self) -> Validity:
        return run_verdict(
            [(_label(r), r.get("verdict"), r.get("verdict_reasons")) for r in self.rows]
        )


def _label(row: dict) -> str:
    return f"{row['concurrency']} threads x {row['processes']}, batch {row['batch_size']:.0f}"


def _manifest(plan: BaselinePlan, pools: dict[int, BatchPool]) -> Manifest:
    first = pools[plan.settings[0]]
    settings = plan.settings
    m = plan.measurement
    return new_manifest(
        "baseline",
        plan.label,
        server=ServerInfo(
            url=None,
            protocol="in-process",
            triton_version=None,
            model="EmTrackMichelId (onnxruntime, CPU)",
            model_version="1",
            model_config={"session_batch": plan.session_batch, "model_seed": MODEL_SEED},
        ),
        workload=WorkloadInfo(
            seed=plan.seed,
            batch_size_setting=settings[0] if len(settings) == 1 else list(settings),
            avg_batch_size=first.avg_batch_size,
            patches_per_event=round(first.patches_per_event),
        ),
        load=LoadInfo(
            mode="in-process",
            levels=tuple(float(layout.threads) for layout in plan.layouts),
            step_seconds=m.window_s,
            parameters={
                "layouts": [[lo.threads, lo.processes] for lo in plan.layouts],
                "warmup_s": m.warmup_s,
                "window_requests": m.window_requests,
                "max_windows": m.max_windows,
                "stability": m.rule.tolerance,
                "percentiles": list(plan.percentiles),
            },
        ),
    )


def baseline_row(
    step: int, result: CpuOnlyResult, settings: MeasurementSettings, percentiles
) -> dict:
    """A layout's steps.csv row, with its verdict as a sweep's level gets one."""
    row = {
        "step": step,
        "concurrency": result.layout.threads,
        "processes": result.layout.processes,
        "batch_size": result.batch_size,
        "started_at": iso_utc(result.unix_span[0]),
        "ended_at": iso_utc(result.unix_span[1]),
        "requests": result.batches,
        "errors": 0,
        "inferences_per_s": result.inferences_per_s,
        "requests_per_s": result.batches / result.wall_s if result.wall_s > 0 else None,
        "stable": result.stability is Stability.STABLE,
        "client_cpu_percent": result.cpu_percent,
        **summarize_latencies(result.latencies_ms).as_row(),
    }
    evidence = LevelEvidence(
        duration_s=result.wall_s,
        min_duration_s=settings.window_s * settings.rule.windows,
        answers=result.batches,
        errors=0,
        stable=result.stability is Stability.STABLE,
    )
    return judge_row(row, result.latencies_ms, evidence, percentiles)


def run_baseline(plan: BaselinePlan, hooks: LevelHooks | None = None) -> BaselineRun:
    hooks = hooks or LevelHooks()
    hooks.progress("simulating one full ProtoDUNE-SP event for the patches ...")
    pools = {s: simulated_pool(s, seed=plan.seed) for s in plan.settings}
    model = model_bytes()
    results: list[CpuOnlyResult] = []
    rows: list[dict] = []
    with RunWriter(plan.results, _manifest(plan, pools)) as writer:
        try:
            for layout in plan.layouts:
                for setting in plan.settings:
                    batches = [b.patches for b in pools[setting].batches]
                    what = f"{layout.label}, batch setting {setting}"
                    hooks.progress(f"CPU-only {what} ...")
                    result = measure_layout(
                        model, batches, layout, plan.measurement, plan.session_batch,
                        hooks_window(hooks, what),
                    )  # fmt: skip
                    row = baseline_row(len(rows), result, plan.measurement, plan.percentiles)
                    writer.append_step(row)
                    if row["verdict"] != "VALID":
                        message = f"{what}: {row['verdict']} ({row['verdict_reasons']})"
                        hooks.warning(message)
                        writer.warn(message)
                    results.append(result)
                    rows.append(row)
        finally:
            verdict = run_verdict([(_label(r), r["verdict"], r["verdict_reasons"]) for r in rows])
            writer.update(verdict=verdict.text, verdict_reasons=verdict.reasons)
    return BaselineRun(writer.folder, tuple(results), tuple(rows))
