"""A sweep as one library call: every configuration's levels, one run folder each.

    runs = run_sweep(SweepPlan(...), Target(...), MetricsOptions(...), hooks)

perf_analyzer keeps its orchestration apart from its command line; so does this: the
CLI builds the plan from arguments, subscribes to the hooks to show progress and
prints what comes back.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from sonic_bench.accuracy.run import AccuracyPlan, AccuracyRun, accuracy_on
from sonic_bench.analysis.throughput import BudgetAnswer, within_budget
from sonic_bench.engine.boundary import LevelEngine, NativeEngine
from sonic_bench.engine.client import EncodedBatches
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.engine.http1 import slow_body_warning
from sonic_bench.engine.loop import ensure_descriptors
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import (
    Level,
    LevelHooks,
    MeasurementSettings,
)
from sonic_bench.measure.measured import MeasuredLevel
from sonic_bench.measure.reference import InProcessReference
from sonic_bench.measure.verdict import (
    DEFAULT_PERCENTILES,
    Validity,
    run_verdict,
)
from sonic_bench.metrics.recording import MetricsOptions, RunMetrics, server_series_row
from sonic_bench.model.repository import MODEL_CALIBRATION, NETWORKS, model_for, network_of
from sonic_bench.perf_analyzer.engine import PerfAnalyzerEngine, tls_arguments
from sonic_bench.process import owned_folder
from sonic_bench.results.manifest import new_manifest, target_parameters, workload_info
from sonic_bench.results.schema import (
    LoadInfo,
    Manifest,
    check_label,
    served_model,
)
from sonic_bench.results.store import ResultsUnwritable, RunWriter, check_writable
from sonic_bench.runs.progress import JobProgress, LevelTiming, PlannedLevel
from sonic_bench.runs.search import LatencyBudgetSearch
from sonic_bench.runs.target import Reached, Target, reach
from sonic_bench.triton.client import check_server
from sonic_bench.triton.stats import ReplicaStats, replica_rows, stats_for
from sonic_bench.workload.batching import NAMED_SETTINGS
from sonic_bench.workload.inputs import BatchSizes, InputData
from sonic_bench.workload.plan import InputOptions, RequestSet, check_batch_text, plan_requests
from sonic_bench.workload.pool import BatchPool, simulated_pool

DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
Engine = Literal["native", "perf_analyzer"]
MAX_CLIENTS = 400


@dataclass(frozen=True)
class Configuration:
    """One served model at one `--batch` value: a run folder of its own. What the batch
    means (a ProtoDUNE-SP setting, a size for any model) the model's inputs decide."""

    batch: str | None  # None: the default for the model's inputs
    dynamic_batching: bool
    model: str


def configurations(
    batches: Sequence[str | int | None],
    dynamic_batching: str,
    model: str | None = None,
    calibration: bool = False,
) -> tuple[Configuration, ...]:
    """Every batch value with every dynamic-batching choice ("on", "off", "both"); each
    model named with --model (a comma list) is itself one choice."""
    db = {"on": [True], "off": [False], "both": [True, False]}[dynamic_batching]
    texts = [None if b is None else check_batch_text(str(b)) for b in batches or [None]]
    if model:  # a comma list: each model one choice (the precision variants side by side)
        models = [m.strip() for m in model.split(",") if m.strip()]
        return tuple(Configuration(b, db[0], m) for m, b in itertools.product(models, texts))
    return tuple(
        Configuration(b, on, MODEL_CALIBRATION if calibration else model_for(on))
        for b, on in itertools.product(texts, db)
    )


def levels(
    concurrency: Sequence[int] | None = None,
    rates: Sequence[float] | None = None,
    poisson: bool = False,
    max_in_flight: int = 64,
) -> tuple[Level, ...]:
    """Open-loop levels when rates are given, else closed-loop concurrency levels."""
    if rates:
        if any(not 0 < r < math.inf for r in rates):
            raise SonicBenchError("--rate values must be positive, finite requests per second")
        if max_in_flight < 1:
            raise SonicBenchError(f"--max-in-flight {max_in_flight}: give at least 1")
        return tuple(Level(rate=r, poisson=poisson, max_in_flight=max_in_flight) for r in rates)
    counts = concurrency or DEFAULT_CONCURRENCY
    if any(c < 1 or c > MAX_CLIENTS for c in counts):
        raise SonicBenchError(f"--concurrency levels must be between 1 and {MAX_CLIENTS}")
    return tuple(Level(concurrency=c) for c in counts)


@dataclass(frozen=True)
class SweepPlan:
    configurations: tuple[Configuration, ...]
    levels: tuple[Level, ...]
    settings: MeasurementSettings = field(default_factory=MeasurementSettings)
    trials: int = 1  # passes over the levels inside each run (one run folder)
    repeat: int = 1  # whole sweeps, every configuration each time: run folders of their own
    reference_seconds: float | None = None  # in-process reference before each level
    seed: int = 1234
    pool_batches: int = 24  # distinct batches replayed
    input_data: InputData | None = None  # None: ProtoDUNE-SP for a patch model, else random
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # --shape
    results: Path = Path("results")
    label: str = "sweep"
    engine: Engine = "native"  # or NVIDIA's perf_analyzer, on the same levels and patches
    latency_budget_ms: float | None = None  # search the levels' range for the most load
    # Every request of the average batch size, as perf_analyzer sends: a like-for-like
    # cross-check of the two engines (perf_analyzer cannot send the realistic mix).
    uniform_batches: bool = False
    percentiles: tuple[int, ...] = DEFAULT_PERCENTILES  # the latency percentiles reported
    # After each configuration's levels: an accuracy run of its model on the same server
    # (its model and inputs are the configuration's).
    accuracy: AccuracyPlan | None = None

    @property
    def sends_uniform_batches(self) -> bool:
        return self.uniform_batches or self.engine == "perf_analyzer"

    def __post_init__(self) -> None:
        check_label(self.label)
        if self.trials < 1:
            raise SonicBenchError(f"--trials {self.trials}: give at least 1")
        if self.repeat < 1:
            raise SonicBenchError(f"--repeat {self.repeat}: give at least 1")
        if self.pool_batches < 1:
            raise SonicBenchError(f"--pool-batches {self.pool_batches}: give at least 1")
        if self.seed < 0:
            raise SonicBenchError(f"--seed {self.seed}: give a number from 0 up")
        if self.reference_seconds is not None and not (
            math.isfinite(self.reference_seconds) and self.reference_seconds > 0
        ):
            raise SonicBenchError("--reference-seconds: give a positive number of seconds")
        if self.engine == "perf_analyzer" and self.settings.busy_poll_us:
            raise SonicBenchError("--busy-poll is the native engine's: drop it for perf_analyzer")
        if not self.configurations or not self.levels:
            raise SonicBenchError("a sweep needs at least one batch setting and one level")
        if self.latency_budget_ms is not None:
            if any(level.rate is not None for level in self.levels):
                raise SonicBenchError("--latency-budget searches concurrency: drop --rate")
            if self.trials > 1:
                raise SonicBenchError("--latency-budget measures each level once: drop --trials")
            if 99 not in self.percentiles:
                raise SonicBenchError("--latency-budget judges the p99: add 99 to --percentiles")
            self.search()  # validates the budget

    def inputs(self, config: Configuration) -> InputOptions:
        return InputOptions(config.batch, self.input_data, self.shapes, self.seed)

    def search(self) -> LatencyBudgetSearch | None:
        if self.latency_budget_ms is None:
            return None
        counts = [level.concurrency for level in self.levels]
        return LatencyBudgetSearch(self.latency_budget_ms, min(counts), max(counts))

    def planned_levels(self) -> list[PlannedLevel]:
        """Every level of the job, for the estimate of the time left."""
        search = self.search()
        planned = []
        for run, (_, config) in enumerate(self.runs()):
            hint = _batch_hint(config.batch)
            if search is not None:
                middle = (search.low + search.high) / 2
                planned += [PlannedLevel(run, hint, middle) for _ in range(search.most_steps)]
                continue
            planned += [
                PlannedLevel(run, hint, lv.concurrency, lv.rate)
                for _ in range(self.trials)
                for lv in self.levels
            ]
        return planned

    def timing(self) -> LevelTiming:
        s = self.settings
        return LevelTiming(s.warmup_s, s.window_s, s.window_requests, s.rule.windows)

    def runs(self) -> list[tuple[int, Configuration]]:
        """(repetition, configuration) in the order they run: every configuration once,
        then again, so that a machine's drift spreads over all of them alike."""
        return [(r, c) for r in range(self.repeat) for c in self.configurations]

    def schedule(self, measured: Sequence[MeasuredLevel]) -> Iterator[tuple[int, Level]]:
        """(trial, level) pairs to measure; a budget search chooses each from the p99 of
        the levels in `measured` (a list the caller appends to as it goes)."""
        search = self.search()
        if search is None:
            yield from ((t, level) for t in range(self.trials) for level in self.levels)
            return
        while True:
            p99 = {int(m.level.concurrency): _p99(m) for m in measured}
            concurrency = search.next_concurrency(p99)
            if concurrency is None:
                return
            yield 0, Level(concurrency=concurrency)


def _batch_hint(batch: str | None) -> float:
    """A configuration's batch size before its requests are built."""
    if batch is None:
        return 1.0
    if batch.strip() in NAMED_SETTINGS:
        return float(NAMED_SETTINGS[batch.strip()])
    sizes = BatchSizes.parse(batch)
    return (sizes.low + sizes.high) / 2


def _p99(measured: MeasuredLevel) -> float:
    """A level without answers counts as over any budget."""
    value = measured.row.get("latency_ms_p99")
    return float(value) if value is not None and value == value else math.inf


class LevelFailed(SonicBenchError):
    """A level ended early (its requests timed out, every one failed): what was measured
    is written, the run is partial, and no further level is tried."""


@dataclass(frozen=True)
class SweepRun:
    """What one configuration's sweep measured and where it was written."""

    configuration: Configuration
    tag: str  # b<setting or sizes>-db|nodb, as in the run folder's name
    folder: Path
    average_batch: float
    results: tuple[MeasuredLevel, ...]
    budget: BudgetAnswer | None = None  # with --latency-budget: the most load within it
    status: str = "complete"  # as the manifest says: partial when a level was not clean
    accuracy: AccuracyRun | None = None  # with SweepPlan.accuracy: its model's answers

    @property
    def errors(self) -> int:
        return sum(int(r.row.get("errors") or 0) for r in self.results)

    @property
    def verdict(self) -> Validity:
        return levels_verdict(self.results)


def levels_verdict(results: Sequence[MeasuredLevel]) -> Validity:
    trials = any(r.row.get("trial") for r in results)

    def label(r: MeasuredLevel) -> str:
        return f"{r.level.label}, trial {r.row['trial'] + 1}" if trials else r.level.label

    return run_verdict(
        [(label(r), r.row.get("verdict"), r.row.get("verdict_reasons")) for r in results]
    )


def run_sweep(
    plan: SweepPlan,
    target: Target,
    metrics: MetricsOptions,
    hooks: LevelHooks | None = None,
) -> list[SweepRun]:
    hooks = hooks or LevelHooks()
    runs: list[SweepRun] = []
    check_writable(plan.results)
    ensure_descriptors(max(lv.concurrency or lv.max_in_flight for lv in plan.levels))
    with reach(target, hooks) as reached, RunMetrics(metrics, reached.metrics_urls) as recording:
        if plan.engine == "perf_analyzer":  # what it cannot do, refused before any work
            tls_arguments(reached.endpoint)
        for message in recording.warnings:
            hooks.warning(message)
        if recording.source is not None:
            hooks.progress(
                f"server metrics: {recording.source.name} every {metrics.interval_s:g} s"
            )
        pools: dict[int, BatchPool] = {}

        def pool_for(setting: int) -> BatchPool:
            if setting not in pools:
                doing = "cutting the same" if pools else "simulating a"  # the event is kept
                hooks.progress(f"{doing} ProtoDUNE-SP event for batch setting {setting} ...")
                pools[setting] = simulated_pool(setting, seed=plan.seed)
            return pools[setting]

        progress = JobProgress(plan.planned_levels(), plan.timing())
        for repetition, config in plan.runs():
            if plan.repeat > 1:
                hooks.progress(f"sweep {repetition + 1} of {plan.repeat}")
            info = check_server(reached.endpoint, config.model)
            requests = plan_requests(
                info["signature"], plan.inputs(config), plan.pool_batches, pool_for
            )
            recording.ready_to_measure()  # Prometheus started scraping while the pool was built
            run = _sweep_one(
                plan, reached, config, info, requests, recording, hooks, progress, repetition
            )
            if plan.accuracy is not None:
                asked = replace(plan.accuracy, model=config.model, inputs=plan.inputs(config))
                run = replace(run, accuracy=accuracy_on(asked, reached, hooks))
            runs.append(run)
    return runs


def _sent(plan: SweepPlan, requests: RequestSet, endpoint: Endpoint) -> RequestSet:
    """The batches a sweep replays: the realistic mix, or perf_analyzer's like for like."""
    if not plan.sends_uniform_batches:
        return requests
    # perf_analyzer's shared memory sends every request from its first data step: like
    # for like is one batch, which the server then copies from its cache.
    return requests.uniform(keep=1 if endpoint.shared_memory else None)


def _tag(requests: RequestSet, signature_db: bool) -> str:
    return f"{requests.tag}-{'db' if signature_db else 'nodb'}"


def _manifest(
    plan: SweepPlan,
    reached: Reached,
    config: Configuration,
    requests: RequestSet,
    server_info: dict,
    tag: str,
    repetition: int,
) -> Manifest:
    open_loop = plan.levels[0].rate is not None
    repeated = f"-r{repetition + 1}" if plan.repeat > 1 else ""
    endpoint = reached.endpoint
    parameters = _load_parameters(plan, endpoint, repetition)
    if reached.gateway is not None:
        parameters["gateway"] = reached.gateway
    return new_manifest(
        "sweep",
        f"{plan.label}-{tag}{repeated}",
        server=served_model(endpoint.url, endpoint.protocol, config.model, server_info),
        workload=workload_info(requests, plan.sends_uniform_batches),
        load=LoadInfo(
            mode="open" if open_loop else "closed",
            levels=tuple(lv.rate if open_loop else lv.concurrency for lv in plan.levels),
            step_seconds=plan.settings.window_s,
            shared_memory=endpoint.shared_memory,
            parameters=parameters,
        ),
    )


def _load_parameters(plan: SweepPlan, endpoint: Endpoint, repetition: int) -> dict:
    parameters: dict = target_parameters(endpoint)
    parameters["percentiles"] = list(plan.percentiles)
    if plan.repeat > 1:
        parameters |= {"repetition": repetition + 1, "repetitions": plan.repeat}
    if plan.latency_budget_ms is not None:
        parameters |= {"latency_budget_ms": plan.latency_budget_ms, "search": "binary"}
    if plan.settings.busy_poll_us:
        parameters["busy_poll_us"] = plan.settings.busy_poll_us
    return parameters


def _sweep_one(
    plan: SweepPlan,
    reached: Reached,
    config: Configuration,
    server_info: dict,
    requests: RequestSet,
    metrics: RunMetrics,
    hooks: LevelHooks,
    progress: JobProgress,
    repetition: int = 0,
) -> SweepRun:
    endpoint = reached.endpoint
    sent = _sent(plan, requests, endpoint)
    signature = sent.signature
    signature.check_sendable(max(b.size for b in sent.batches), endpoint.shared_memory)
    average = requests.average if not plan.sends_uniform_batches else sent.average
    progress.run_begins(average)
    batches = EncodedBatches(sent.batches, signature)
    stats = stats_for(reached.endpoint, reached.replicas, config.model)
    reference = None
    if plan.reference_seconds:
        network = network_of(server_info["model_config"])
        if network is None:
            raise SonicBenchError(
                f"--reference runs the model in-process, and {config.model} is not one of "
                f"sonic-bench's networks ({', '.join(NETWORKS)}): drop --reference"
            )
        hooks.progress("in-process reference: the model through onnxruntime, between levels")
        reference = InProcessReference(NETWORKS[network](), batches.batches, plan.reference_seconds)
    results: list[MeasuredLevel] = []
    tag = _tag(requests, signature.dynamic_batching)
    hooks.progress(
        f"sweep {config.model}, batch ~{average:.0f} ({requests.tag[1:]}), {endpoint.protocol}"
        + ("" if requests.protodune else f", {requests.input_data.describe()} inputs")
        + (", perf_analyzer" if plan.engine == "perf_analyzer" else "")
        + (", every request that size" if plan.sends_uniform_batches else "")
        + (", one batch replayed" if len(sent.batches) == 1 else "")
    )
    manifest = _manifest(plan, reached, config, sent, server_info, tag, repetition)
    with RunWriter(plan.results, manifest) as writer, ExitStack() as owned:
        owned.enter_context(batches)  # its shared-memory regions, if any, go at the end
        writer.update(metrics=metrics.info())
        in_band_http = endpoint.protocol == "http" and not endpoint.shared_memory
        if in_band_http and (message := slow_body_warning(batches.body_sizes())):
            hooks.warning(message)
            writer.warn(message)
        engine: LevelEngine
        if plan.engine == "perf_analyzer":  # its input data and reports, removed at the end
            workdir = owned.enter_context(owned_folder("sonic-pa-"))
            engine = PerfAnalyzerEngine.prepare(
                batches, endpoint, config.model, round(average), plan.settings, stats,
                workdir, hooks,
            )  # fmt: skip
        else:
            engine = NativeEngine(endpoint, config.model, batches, plan.settings, stats, hooks)

        started = time.time()
        try:
            for step, (trial, level) in enumerate(plan.schedule(results)):
                progress.level_begins()
                hooks.progress(progress.line(f"{tag} {level.label}"))
                row: dict = {"trial": trial}
                if reference is not None:
                    row["reference_inferences_per_s"] = reference.measure()
                before = stats.snapshots() if isinstance(stats, ReplicaStats) else None
                lost_before = set(stats.lost) if isinstance(stats, ReplicaStats) else set()
                measured = engine.measure(step, level)
                row.update(measured.judged(plan.settings, plan.percentiles))
                if before is not None:
                    measured = _replicas_of(
                        measured, step, stats, (before, lost_before), writer, hooks
                    )
                row.update(server_series_row(metrics.level(config.model, *measured.span)))
                writer.append_step(row)
                records = sorted(measured.records, key=lambda r: r.t_send)
                writer.append_requests(r.row(step) for r in records)
                if not row.get("requests"):
                    measured = replace(
                        measured,
                        warnings=(*measured.warnings, f"{level.label}: no request answered"),
                    )
                for message in measured.warnings:
                    if measured.clean:
                        writer.warn(message)
                    else:  # failed requests, a level cut short, another client: not complete
                        writer.degrade(message)
                results.append(replace(measured, row=row))
                progress.finished_one(row.get("inferences_per_s"))
                if measured.failure is not None:
                    raise LevelFailed(f"{tag} {level.label}: {measured.failure}")
            budget = _budget_answer(plan, results)
            if budget is not None:
                measured_levels = tuple(float(r.level.concurrency) for r in results)
                writer.update(load=replace(manifest.load, levels=measured_levels))
        finally:
            answered = sum(int(r.row.get("requests") or 0) for r in results)
            # When the run already fails (a full disk, say), its own error is the one told.
            failing = sys.exception() is not None
            with contextlib.suppress(ResultsUnwritable) if failing else contextlib.nullcontext():
                verdict = levels_verdict(results)
                if not results:
                    verdict = Validity(("no level measured",))
                writer.update(verdict=verdict.text, verdict_reasons=verdict.reasons)
                metrics.record(writer, started, time.time(), answered)
    return SweepRun(
        config, tag, writer.folder, average, tuple(results), budget, writer.manifest.status
    )


def _replicas_of(
    measured: MeasuredLevel,
    step: int,
    stats: ReplicaStats,
    before: tuple[tuple, set[str]],
    writer: RunWriter,
    hooks: LevelHooks,
) -> MeasuredLevel:
    """Each replica's part of the level (`before`: their counts and which were lost when
    it began), written to replicas.csv and shown; a replica lost during it is said to
    be, with what it means for the counts."""
    counts, lost_before = before
    after = stats.snapshots()
    throughput = float(measured.row.get("inferences_per_s") or math.nan)
    rows = replica_rows(step, stats.urls, counts, after, throughput, tuple(stats.lost))
    writer.append_replicas(rows)
    hooks.progress("  replicas: " + ", ".join(map(_replica_text, rows)))
    warnings = [
        f"{measured.level.label}: replica {url} stopped answering ({why}): the requests it "
        "served after its last count are not checked against the run's"
        for url, why in stats.lost.items()
        if url not in lost_before
    ]
    if not warnings:
        return measured
    return replace(measured, warnings=(*measured.warnings, *warnings))


def _replica_text(row: dict) -> str:
    batch = row["server_batch_avg"]
    said = f"batch {batch:.0f}" if batch == batch else "no batch"
    lost = "" if row["reachable"] else ", stopped answering"
    return f"{row['replica']} {row['inferences_per_s']:,.0f} inf/s ({said}{lost})"


def _budget_answer(plan: SweepPlan, results: list[MeasuredLevel]) -> BudgetAnswer | None:
    if plan.latency_budget_ms is None:
        return None
    return within_budget(
        [r.level.concurrency for r in results],
        [_p99(r) for r in results],
        [float(r.row.get("inferences_per_s") or math.nan) for r in results],
        plan.latency_budget_ms,
    )
