"""Request and event records: collected where users run, written where the test is led.

Workers (or the single local process) buffer what their users did and send it every
second as a `sonic_records` message; the master (or the local runner, through the same
call) assigns each record to its step and appends it to the run folder at once, so a
stop or crash keeps every finished event.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sonic_bench.loadgen.steps import Step, StepLog
from sonic_bench.measure.stats import summarize_latencies
from sonic_bench.metrics.recording import RunMetrics, server_series_row
from sonic_bench.results.store import RunWriter

MESSAGE = "sonic_records"
FLUSH_INTERVAL_S = 1.0
STEP_GRACE_S = 3.0  # records of a step may still be on their way from workers
EVENT_COLUMNS = (
    "step",
    "users",
    "worker",
    "event",
    "t_start",
    "other_s",
    "module_s",
    "total_s",
    "requests",
    "failed_requests",
)


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
    max_cpu_percent: float = 0.0
    written: bool = False

    def row(self) -> dict:
        end = self.step.end or time.time()
        span = max(end - self.step.start, 1e-9)
        ok = len(self.latencies_ms)
        return {
            "step": self.step.index,
            "concurrency": self.step.users,
            "batch_size": self.patches / ok if ok else None,
            "started_at": _iso(self.step.start),
            "ended_at": _iso(end),
            "requests": ok,
            "errors": self.errors,
            "inferences_per_s": self.patches / span,
            "requests_per_s": ok / span,
            "client_cpu_percent": self.max_cpu_percent,
            **summarize_latencies(np.array(self.latencies_ms)).as_row(),
        }


def _iso(unix: float) -> str:
    return (
        dt.datetime.fromtimestamp(unix, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class RunRecorder:
    """Writes a loadgen run folder from the records that reach this (leading) process."""

    def __init__(self, writer: RunWriter, steps: StepLog, metrics: RunMetrics | None = None):
        self.writer = writer
        self.steps = steps
        self.metrics = metrics
        self.started = time.time()
        self.tallies: dict[int, StepTally] = {}
        self.requests_path = writer.folder / "requests.csv.gz"
        self.events_path = writer.folder / "events.csv"

    def _tally(self, step: Step) -> StepTally:
        if step.index not in self.tallies:
            self.tallies[step.index] = StepTally(step)
        tally = self.tallies[step.index]
        tally.step = self.steps.steps[step.index]  # picks up the end once known
        return tally

    def receive(self, payload: dict) -> None:
        self._write_requests(payload["requests"])
        self._write_events(payload["events"])
        self.write_finished_steps(time.time() - STEP_GRACE_S)

    def _write_requests(self, requests: list) -> None:
        lines = []
        for worker, t_send, t_recv, size, error in requests:
            step = self.steps.at(t_recv)
            index = step.index if step else 0
            latency = (t_recv - t_send) * 1000.0
            if step is not None:
                tally = self._tally(step)
                if error is None:
                    tally.latencies_ms.append(latency)
                    tally.patches += size
                else:
                    tally.errors += 1
            clean = (error or "").replace(",", ";").replace("\n", " ")
            lines.append(
                f"{index},{worker},{t_send:.6f},{t_recv:.6f},{latency:.3f},{size},"
                f"{int(error is None)},{clean}"
            )
        if not lines:
            return
        header = not self.requests_path.exists()
        with gzip.open(self.requests_path, "at", compresslevel=3) as f:
            if header:
                f.write("step,worker,t_send,t_recv,latency_ms,batch_size,ok,error\n")
            f.write("\n".join(lines) + "\n")

    def _write_events(self, events: list[dict]) -> None:
        if not events:
            return
        header = not self.events_path.exists()
        with open(self.events_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EVENT_COLUMNS)
            if header:
                writer.writeheader()
            for event in events:
                step = self.steps.at(event["t_start"] + event["total_s"])
                writer.writerow(
                    {
                        **{k: event[k] for k in EVENT_COLUMNS if k in event},
                        "step": step.index if step else 0,
                        "users": step.users if step else 0,
                    }
                )

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
                row = tally.row()
                if self.metrics is not None:
                    model = self.writer.manifest.server.model
                    end = step.end or time.time()
                    row.update(server_series_row(self.metrics.level(model, step.start, end)))
                self.writer.append_step(row)
                tally.written = True

    def finish(self, status: str, warnings: tuple[str, ...] = ()) -> Path:
        self.steps.close(time.time())
        self.write_finished_steps(float("inf"))
        if self.metrics is not None:
            self.metrics.write(self.writer.folder, self.started, time.time())
            self.writer.update(metrics=self.metrics.info())
            warnings = (*warnings, *self.metrics.warnings)
            self.metrics.__exit__(None, None, None)
        self.writer.finish(status, warnings)  # type: ignore[arg-type]
        return self.writer.folder
