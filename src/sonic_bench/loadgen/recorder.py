"""Request and event records: collected where users run, written where the test is led.

Workers (or the single local process) buffer what their users did and send it every
second as a `sonic_records` message; the master (or the local runner, through the same
call) assigns each record to its step and appends it to the run folder at once, so a
stop or crash keeps every finished event.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sonic_bench.engine.client import is_rejection
from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen.steps import Step, StepLog
from sonic_bench.measure.level import shared_server_warnings
from sonic_bench.measure.stats import summarize_latencies
from sonic_bench.metrics.recording import RunMetrics, server_series_row
from sonic_bench.results.schema import RunStatus, iso_utc
from sonic_bench.results.store import RunWriter
from sonic_bench.triton.stats import ModelStats, ReplicaStats, StatsReader, replica_rows

MESSAGE = "sonic_records"
LAST_RECORDS = "sonic_last_records"  # the master asks each worker for its last records
FLUSH_INTERVAL_S = 1.0
STEP_GRACE_S = 3.0  # records of a step may still be on their way from workers


@dataclass
class RecordBuffer:
    """What this process's users did since the last flush."""

    requests: list[tuple] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def on_request(self, response_length=0, exception=None, context=None, **_) -> None:
        if not context or not context.get("sonic"):
            return
        error = None if exception is None else str(exception)
        self.requests.append(
            (context["worker"], context["t_send"], context["t_recv"], response_length, error)
        )

    def on_event(self, **record) -> None:
        self.events.append(record)

    def take(self) -> dict:
        payload = {"requests": self.requests, "events": self.events}
        self.requests, self.events = [], []
        return payload


@dataclass
class StepTally:
    step: Step
    latencies_ms: list[float] = field(default_factory=list)
    patches: int = 0
    errors: int = 0
    rejected: int = 0  # of the errors: refused, never served
    max_cpu_percent: float = 0.0
    written: bool = False

    def row(self) -> dict:
        end = self.step.end or time.time()
        span = max(end - self.step.start, 1e-9)
        ok = len(self.latencies_ms)
        return {
            "step": self.step.index,
            # What ran, not what was asked: a step short of its users says so elsewhere.
            "concurrency": self.step.users if self.step.running is None else self.step.running,
            "batch_size": self.patches / ok if ok else None,
            "started_at": iso_utc(self.step.start),
            "ended_at": iso_utc(end),
            "requests": ok,
            "errors": self.errors,
            "rejected": self.rejected,
            "inferences_per_s": self.patches / span,
            "requests_per_s": ok / span,
            "client_cpu_percent": self.max_cpu_percent,
            **summarize_latencies(np.array(self.latencies_ms)).as_row(),
        }


@dataclass
class FailureWatch:
    """Failed requests and the current run of failed events (all requests failed or the
    event aborted): a server that went away must stop the run, not be measured."""

    max_failed_events: int
    failed_requests: int = 0
    first_error: str | None = None
    failed_in_a_row: int = 0
    rejected: int = 0  # of the failed: refused by a gateway or the server, never served
    first_rejection: str | None = None

    def request(self, error: str | None) -> None:
        if error is None:
            return
        if is_rejection(error):
            self.rejected += 1
            self.first_rejection = self.first_rejection or error
        else:
            self.failed_requests += 1
            self.first_error = self.first_error or error

    def event(self, failed_requests: int) -> None:
        self.failed_in_a_row = self.failed_in_a_row + 1 if failed_requests else 0

    @property
    def give_up(self) -> bool:
        return 0 < self.max_failed_events <= self.failed_in_a_row

    def warnings(self) -> list[str]:
        said = []
        if self.rejected:
            said.append(
                f"rejected by the gateway or server, never served: {self.rejected} requests "
                f"(first: {self.first_rejection})"
            )
        if self.failed_requests:
            said.append(f"{self.failed_requests} requests failed (first: {self.first_error})")
        return said


class RunRecorder:
    """Writes a loadgen run folder from the records that reach this (leading) process.

    Owns the run's writer and its metrics recording (entered by the caller, which hands it
    over here; left in `finish`)."""

    def __init__(
        self,
        writer: RunWriter,
        metrics: RunMetrics | None,
        max_failed_events: int,
        settings: dict | None = None,
        stats: StatsReader | ReplicaStats | None = None,
    ):
        self.writer = writer
        self.settings = settings or {}  # what the leading process asked for
        self.workers: dict[str, dict] = {}  # what each process that sent records ran with
        self.mismatches: list[str] = []
        self.steps = StepLog()
        self.failures = FailureWatch(max_failed_events)
        self.started = time.time()
        self.tallies: dict[int, StepTally] = {}
        self.sent = 0  # requests recorded, answered or not
        # Triton's count for the model at the start: another client shows at the end.
        # Behind a gateway: every replica's counts as each step began (the previous one's
        # end), so each step's rows in replicas.csv say which replica served what.
        self.replica_marks: dict[int, tuple[ModelStats, ...]] = {}
        self.stats, self.stats_before = stats, None
        self._mark_replicas(0)  # before any user runs: the first step's start
        if stats is not None:
            with contextlib.suppress(SonicBenchError):  # no statistics: no such check
                self.stats_before = stats.snapshot()
        self._resources = ExitStack()
        self.metrics = metrics
        if metrics is not None:
            self._resources.push(metrics)  # started by the caller, stopped in `finish`
            writer.update(metrics=metrics.info())

    def on_step(self, users: int, when: float, **extra) -> None:
        """A step begins (the staircase's event): logged, and the replicas' counts marked."""
        known = len(self.steps.steps)
        self.steps.on_step(users, when, **extra)
        if len(self.steps.steps) > known:
            self._mark_replicas(self.steps.steps[-1].index)

    def _mark_replicas(self, index: int) -> None:
        if isinstance(self.stats, ReplicaStats):
            with contextlib.suppress(SonicBenchError):  # no replica answers: the run says so
                self.replica_marks.setdefault(index, self.stats.snapshots())

    def _write_replicas(self, step: Step, row: dict) -> None:
        """The step's part of each replica, from its mark to the next step's."""
        before, after = self.replica_marks.get(step.index), self.replica_marks.get(step.index + 1)
        if not isinstance(self.stats, ReplicaStats) or before is None or after is None:
            return
        rows = replica_rows(
            step.index,
            self.stats.urls,
            before,
            after,
            float(row["inferences_per_s"]),
            tuple(self.stats.lost),
        )
        self.writer.append_replicas(rows)

    def _tally(self, step: Step) -> StepTally:
        if step.index not in self.tallies:
            self.tallies[step.index] = StepTally(step)
        tally = self.tallies[step.index]
        tally.step = self.steps.steps[step.index]  # picks up the end once known
        return tally

    def receive(self, payload: dict) -> None:
        self._note_worker(payload.get("worker", "local"), payload.get("settings", {}))
        self._write_requests(payload["requests"])
        self._write_events(payload["events"])
        self.write_finished_steps(time.time() - STEP_GRACE_S)

    def _note_worker(self, worker: str, settings: dict) -> None:
        if worker in self.workers:
            return
        self.workers[worker] = settings
        differ = sorted(k for k in self.settings if settings.get(k) != self.settings[k])
        if settings and differ:
            shown = ", ".join(
                f"{k}={settings.get(k)!r} (asked {self.settings[k]!r})" for k in differ
            )
            self.mismatches.append(f"worker {worker} ran with other settings: {shown}")

    def _write_requests(self, requests: list) -> None:
        rows = []
        for worker, t_send, t_recv, size, error in requests:
            step = self.steps.at(t_recv)
            latency = (t_recv - t_send) * 1000.0
            self.failures.request(error)
            if step is not None:
                tally = self._tally(step)
                if error is None:
                    tally.latencies_ms.append(latency)
                    tally.patches += size
                else:
                    tally.errors += 1
                    tally.rejected += is_rejection(error)
            index = step.index if step else 0
            rows.append((index, worker, t_send, t_recv, latency, size, error is None, error))
        self.sent += len(rows)
        self.writer.append_requests(rows)

    def _write_events(self, events: list[dict]) -> None:
        rows = []
        for event in events:
            self.failures.event(event.get("failed_requests", 0))
            step = self.steps.at(event["t_start"] + event["total_s"])
            rows.append(
                {**event, "step": step.index if step else 0, "users": step.users if step else 0}
            )
        self.writer.append_events(rows)

    def note_cpu(self, percent: float) -> None:
        step = self.steps.current
        if step is not None:
            tally = self._tally(step)
            tally.max_cpu_percent = max(tally.max_cpu_percent, percent)

    def write_finished_steps(self, before: float) -> None:
        """steps.csv rows of steps that ended before `before`, in order, once each."""
        for step in self.steps.steps:
            if step.end is None or step.end > before:
                break
            tally = self._tally(step)
            if not tally.written:
                if tally.step.short_of_users:
                    self.mismatches.append(
                        f"step {step.index} asked for {step.users} users and "
                        f"{tally.step.running} ran (as the workers reported): a worker "
                        "could not run its users (another locustfile, or a user class that "
                        "failed to start; see the worker's log)"
                    )
                if not tally.latencies_ms:
                    self.mismatches.append(
                        f"step {step.index} ({tally.step.users} users) had no request answered"
                    )
                row = tally.row()
                if self.metrics is not None:
                    model = self.writer.manifest.server.model
                    end = step.end or time.time()
                    row.update(server_series_row(self.metrics.level(model, step.start, end)))
                self.writer.append_step(row)
                self._write_replicas(step, row)
                tally.written = True

    def _shared_server(self) -> list[str]:
        if self.stats is None or self.stats_before is None:
            return []
        try:
            counted = self.stats.snapshot() - self.stats_before
        except SonicBenchError:
            return []  # the server is gone: the failed requests say so already
        model = self.writer.manifest.server.model
        return list(shared_server_warnings("the run", model, self.sent, counted))

    def _lost(self) -> list[str]:
        lost = self.stats.lost if isinstance(self.stats, ReplicaStats) else {}
        return [
            f"replica {url} stopped answering ({why}): the requests it served after its "
            "last count are not checked against the run's"
            for url, why in lost.items()
        ]

    def abandon(self, reason: str) -> None:
        """Stop recording: the metrics recording ends, the manifest says why."""
        with contextlib.suppress(Exception):  # it must not hide the reason
            self._resources.close()
        self.writer.abandon(reason)

    def finish(self, status: RunStatus, warnings: tuple[str, ...] = ()) -> Path:
        """Write what is left, stop the metrics recording, and close the manifest. A run
        in which requests failed is never `complete`."""
        ended = time.time()
        self.steps.close(ended)
        self._mark_replicas(len(self.steps.steps))  # the last step's end
        self.write_finished_steps(float("inf"))
        try:
            if self.metrics is not None:
                answered = sum(len(t.latencies_ms) for t in self.tallies.values())
                # Up to the last step's end: its scrape is already awaited, not one more.
                self.metrics.record(self.writer, self.started, ended, answered)
        finally:
            self._resources.close()
        failed = self.failures.warnings() + self.mismatches + self._shared_server()
        if failed and status == "complete":
            status = "partial"
        if self.workers:
            load = self.writer.manifest.load
            parameters = {**load.parameters, "workers": self.workers}
            self.writer.update(load=replace(load, parameters=parameters))
        if status != "complete" and not self.writer.steps_written:
            status = "failed"
        self.writer.finish(status, (*warnings, *failed, *self._lost()))
        return self.writer.folder
