"""The CPU-only baseline as one library call: in-process onnxruntime at each thread count
and batch setting, written as a `baseline` run folder."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.baseline import (
    DEFAULT_SESSION_BATCH,
    BaselineResult,
    open_session,
    time_inference,
)
from sonic_bench.measure.level import LevelHooks
from sonic_bench.measure.stats import summarize_latencies
from sonic_bench.model.emtrackmichel import DEFAULT_SEED as MODEL_SEED
from sonic_bench.model.emtrackmichel import model_bytes
from sonic_bench.results.manifest import new_manifest
from sonic_bench.results.schema import (
    LoadInfo,
    Manifest,
    ServerInfo,
    WorkloadInfo,
    check_label,
    utc_now,
)
from sonic_bench.results.store import RunWriter
from sonic_bench.workload.event import DEFAULT_SEED as WORKLOAD_SEED
from sonic_bench.workload.pool import BatchPool, simulated_pool


@dataclass(frozen=True)
class BaselinePlan:
    settings: tuple[int, ...]  # batch settings
    threads: tuple[int, ...] = (1, 0)  # 0: one per core
    duration_s: float = 5.0
    session_batch: int = DEFAULT_SESSION_BATCH
    seed: int = WORKLOAD_SEED
    results: Path = Path("results")
    label: str = "baseline"

    def __post_init__(self) -> None:
        check_label(self.label)
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise SonicBenchError(f"--duration {self.duration_s:g}: give a positive number")
        if not self.settings:
            raise SonicBenchError("--batch is empty: give small, large or a number")

    def thread_counts(self) -> tuple[int, ...]:
        return tuple(t or os.cpu_count() or 1 for t in self.threads)


@dataclass(frozen=True)
class BaselineRun:
    folder: Path
    results: tuple[BaselineResult, ...]


def _manifest(plan: BaselinePlan, pools: dict[int, BatchPool]) -> Manifest:
    first = pools[plan.settings[0]]
    settings = plan.settings
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
        load=LoadInfo(mode="in-process", levels=plan.thread_counts(), step_seconds=plan.duration_s),
    )


def _row(step: int, result: BaselineResult, started: str) -> dict:
    return {
        "step": step,
        "concurrency": result.threads,
        "batch_size": result.batch_size,
        "started_at": started,
        "ended_at": utc_now(),
        "requests": result.batches,
        "errors": 0,
        "inferences_per_s": result.inferences_per_s,
        "requests_per_s": result.batches / result.wall_s,
        "stable": True,
        "client_cpu_percent": result.cpu_percent,
        **summarize_latencies(result.latencies_ms).as_row(),
    }


def run_baseline(plan: BaselinePlan, hooks: LevelHooks | None = None) -> BaselineRun:
    hooks = hooks or LevelHooks()
    hooks.progress("simulating one full ProtoDUNE-SP event for the patches ...")
    pools = {s: simulated_pool(s, seed=plan.seed) for s in plan.settings}
    model = model_bytes()
    results: list[BaselineResult] = []
    with RunWriter(plan.results, _manifest(plan, pools)) as writer:
        for threads, n_threads in zip(plan.threads, plan.thread_counts(), strict=True):
            session = open_session(model, threads)
            for setting in plan.settings:
                batches = [b.patches for b in pools[setting].batches]
                started = utc_now()
                hooks.progress(
                    f"threads {n_threads}, batch setting {setting}: {plan.duration_s:.0f} s ..."
                )
                result = time_inference(
                    session, batches, n_threads, plan.duration_s, plan.session_batch
                )
                writer.append_step(_row(len(results), result, started))
                results.append(result)
    return BaselineRun(writer.folder, tuple(results))
