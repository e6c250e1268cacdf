"""`sonic-bench accuracy`: every batch of a workload through the server under load, each
answer kept and compared with the in-process FP32 reference (MLPerf LoadGen's accuracy
mode, through the same engine as the performance runs).

ProtoDUNE-SP events go one at a time (an event's inputs are ~200 MB at a tenth of the
detector): sent with `concurrency` requests in flight, answers kept, compared, freed.
Any other model's batches go as one group. The run folder holds the requests as a sweep's
do, one steps.csv row per group, and `accuracy.json` (`drift.AccuracySummary`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonic_bench.accuracy.drift import AccuracySummary, DriftTally, Outputs
from sonic_bench.accuracy.reference import MICHEL_THRESHOLD, judging_for, reference_for
from sonic_bench.engine.client import EncodedBatches, InferClient, is_rejection
from sonic_bench.engine.loop import EachOnce, ensure_descriptors
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import LevelHooks, shared_server_warnings
from sonic_bench.measure.records import Clock, RequestRecord
from sonic_bench.measure.stats import summarize_latencies
from sonic_bench.model.signature import Batch, ModelSignature
from sonic_bench.results.manifest import new_manifest, target_parameters, workload_info
from sonic_bench.results.schema import LoadInfo, iso_utc, served_model
from sonic_bench.results.store import RunWriter, check_writable
from sonic_bench.runs.progress import clock_text
from sonic_bench.runs.target import Reached, Target, reach
from sonic_bench.triton.client import check_server
from sonic_bench.triton.stats import stats_for
from sonic_bench.workload.plan import InputOptions, plan_requests
from sonic_bench.workload.pool import event_batches, simulated_pool

DEFAULT_EVENTS = 20
DEFAULT_EVENT_SCALE = 0.1  # a tenth of ProtoDUNE-SP's hits per event: ~5,800 patches
DEFAULT_BATCHES = 64  # for a model fed other data than ProtoDUNE-SP's


@dataclass(frozen=True)
class AccuracyPlan:
    model: str
    inputs: InputOptions
    concurrency: int = 4
    events: int = DEFAULT_EVENTS
    event_scale: float = DEFAULT_EVENT_SCALE
    batches: int = DEFAULT_BATCHES
    passes: int = 1
    reference: Path | None = None
    michel_threshold: float = MICHEL_THRESHOLD
    results: Path = Path("results")
    label: str = "accuracy"

    def __post_init__(self) -> None:
        for name, value in (
            ("--concurrency", self.concurrency),
            ("--events", self.events),
            ("--batches", self.batches),
            ("--passes", self.passes),
        ):
            if value < 1:
                raise SonicBenchError(f"{name} {value}: give a whole number from 1 up")
        if not 0 < self.event_scale <= 1:
            raise SonicBenchError(
                f"--event-scale {self.event_scale}: give a fraction of an event in (0, 1]"
            )
        if not 0 < self.michel_threshold < 1:
            raise SonicBenchError(
                f"--michel-threshold {self.michel_threshold}: give a score cut in (0, 1)"
            )


@dataclass(frozen=True)
class Group:
    """Batches sent and compared together: one event's, or all of another model's."""

    batches: tuple[Batch, ...]
    event: int | None


@dataclass(frozen=True)
class AccuracyRun:
    folder: Path
    summary: AccuracySummary
    status: str
    inferences_per_s: float
    warnings: tuple[str, ...]


def run_accuracy(
    plan: AccuracyPlan, target: Target, hooks: LevelHooks | None = None
) -> AccuracyRun:
    hooks = hooks or LevelHooks()
    check_writable(plan.results)
    ensure_descriptors(plan.concurrency)
    with reach(target, hooks) as reached:
        return accuracy_on(plan, reached, hooks)


def accuracy_on(plan: AccuracyPlan, reached: Reached, hooks: LevelHooks) -> AccuracyRun:
    """The accuracy run against a server already reached (a sweep's, after its levels)."""
    endpoint = reached.endpoint
    info = check_server(endpoint, plan.model)
    config = info["model_config"]
    reference = reference_for(plan.model, config, plan.reference)
    first, groups = _groups(plan, info["signature"])
    tally = DriftTally(plan.model, reference.name, judging_for(config, plan.michel_threshold))
    stats = stats_for(endpoint, reached.replicas, plan.model)
    manifest = _manifest(plan, endpoint, info, first, reference.name)
    with RunWriter(plan.results, manifest) as writer:
        before = stats.snapshot()
        sent = served = 0
        seconds = 0.0
        began = time.monotonic()
        for step, group in enumerate(groups):
            hooks.progress(_group_line(group, plan, step, time.monotonic() - began))
            records, answers = _send(endpoint, plan, first.signature, group)
            references = [reference.outputs(b) for b in group.batches]
            tally.add(answers, references, sum(1 for r in records if not r.ok), group.event)
            writer.append_step(_row(step, plan.concurrency, records))
            writer.append_requests(r.row(step) for r in records)
            sent += len(records)
            served += sum(r.batch_size for r in records if r.ok)
            seconds += _span(records)
        summary = tally.summary()
        writer.write_accuracy(summary.to_dict())
        counted = stats.snapshot() - before
        warnings = _warnings(summary, plan.model, sent, counted)
        status = "partial" if warnings else "complete"
        writer.finish(status, warnings)
    rate = served / seconds if seconds else float("nan")
    return AccuracyRun(writer.folder, summary, status, rate, warnings)


def _manifest(plan: AccuracyPlan, endpoint, info: dict, first, reference: str):
    parameters = target_parameters(endpoint) | {
        "concurrency": plan.concurrency,
        "passes": plan.passes,
        "michel_threshold": plan.michel_threshold,
        "reference": reference,
    }
    return new_manifest(
        "accuracy",
        f"{plan.label}-{plan.model}",
        served_model(endpoint.url, endpoint.protocol, plan.model, info),
        workload_info(first, event_scale=plan.event_scale if first.protodune else 1.0),
        LoadInfo(
            mode="closed",
            levels=(float(plan.concurrency),),
            step_seconds=0.0,
            shared_memory=endpoint.shared_memory,
            parameters=parameters,
        ),
    )


def _warnings(summary: AccuracySummary, model: str, sent: int, counted) -> tuple[str, ...]:
    """Why the answers cannot be trusted whole: mixed up, missing, failed, shared."""
    said = list(summary.problems())
    if summary.failed:
        said.append(f"{summary.failed} requests failed: their batches were not compared")
    said += shared_server_warnings("the run", model, sent, counted)
    return tuple(said)


def _groups(plan: AccuracyPlan, signature: ModelSignature):
    """The request set that describes the run, and the groups to send (events made as
    they are needed: only one event's patches are held at a time)."""
    pools = {}

    def one_event_pool(setting: int):
        if setting not in pools:
            pools[setting] = simulated_pool(
                setting, seed=plan.inputs.seed, event_scale=plan.event_scale
            )
        return pools[setting]

    first = plan_requests(signature, plan.inputs, plan.batches, one_event_pool)
    if not first.protodune:
        return first, iter([Group(first.batches, None)])
    setting = first.setting

    def events() -> Iterator[Group]:
        for index in range(plan.events):
            cut = event_batches(setting, index, plan.event_scale, plan.inputs.seed)
            yield Group(tuple(Batch((b.patches,), b.size) for b in cut), index)

    return first, events()


def _group_line(group: Group, plan: AccuracyPlan, done: int, elapsed_s: float) -> str:
    """What is sent now; for events, the time so far and left (events take alike)."""
    patches = sum(b.size for b in group.batches)
    said = f"{len(group.batches)} requests ({patches:,} samples)"
    if group.event is None:
        return f"accuracy: {said}"
    left = f"about {clock_text(elapsed_s / done * (plan.events - done))} left" if done else ""
    timing = f" · {clock_text(elapsed_s)} elapsed" + (f" · {left}" if left else "")
    return f"accuracy: event {group.event + 1} of {plan.events}, {said}{timing}"


def _send(endpoint, plan: AccuracyPlan, signature: ModelSignature, group: Group):
    """Every batch of the group sent `passes` times with `concurrency` in flight; each
    answer kept by batch index."""
    answers: dict[int, list[Outputs]] = defaultdict(list)

    def keep(index: int, outputs: Outputs) -> None:
        answers[index].append(outputs)

    with EncodedBatches(list(group.batches), signature) as batches:
        make: Callable[[], InferClient] = lambda: InferClient(  # noqa: E731
            endpoint, plan.model, batches, on_answer=keep
        )
        driver = EachOnce(make, plan.concurrency, Clock(), plan.passes)
        driver.run()
        if driver.failure is not None and not driver.log.records():
            raise SonicBenchError(f"accuracy: {driver.failure}")
    return driver.log.records(), dict(answers)


def _span(records: Sequence[RequestRecord]) -> float:
    if not records:
        return 0.0
    return max(r.t_recv for r in records) - min(r.t_send for r in records)


def _row(step: int, concurrency: int, records: Sequence[RequestRecord]) -> dict:
    ok = [r for r in records if r.ok]
    span = _span(records)
    start = min((r.t_send for r in records), default=time.time())
    return {
        "step": step,
        "concurrency": concurrency,
        "batch_size": float(np.mean([r.batch_size for r in ok])) if ok else None,
        "started_at": iso_utc(start),
        "ended_at": iso_utc(start + span),
        "requests": len(ok),
        "errors": len(records) - len(ok),
        "rejected": sum(1 for r in records if not r.ok and is_rejection(r.error)),
        "inferences_per_s": sum(r.batch_size for r in ok) / span if span else None,
        "requests_per_s": len(ok) / span if span else None,
        **summarize_latencies([r.latency_ms for r in ok]).as_row(),
    }
