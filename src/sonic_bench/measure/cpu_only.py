"""The CPU-only baseline: the model in-process, in P processes of T threads side by side.

A grid site runs one job per core, not one job with every core: the machine's best
CPU-only throughput may be N single-thread processes (what Triton's model instances
amount to), or one process of N threads. Each layout is measured as the sweep measures
a level: a warm-up left out, windows (time, and count windows with `window_requests`),
the same stability rule, every answer's latency kept. CPU time is read from the workers'
own clocks, so a busy machine shows up as CPU < wall x processes.

Workers are forked (the batches are inherited, not copied), die with the harness
(PR_SET_PDEATHSIG, and they watch their parent) and are stopped on every way out.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import psutil

from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.baseline import DEFAULT_SESSION_BATCH, batch_size, infer, open_session
from sonic_bench.measure.level import COUNT_POLL_S, LevelHooks, MeasurementSettings
from sonic_bench.measure.windows import (
    Stability,
    WindowStats,
    assess,
    count_window_end,
    window_stats,
)
from sonic_bench.model.signature import Batch
from sonic_bench.workload.detector import PATCHES_PER_EVENT

PR_SET_PDEATHSIG = 1
READY_TIMEOUT_S = 120.0  # building a session of the 11.9 M-parameter model takes ~1 s
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Layout:
    """T threads in each of P processes."""

    threads: int
    processes: int

    @property
    def label(self) -> str:
        return f"{self.threads} thread{'s' if self.threads > 1 else ''} x {self.processes}"


def default_layouts(cores: int | None = None) -> tuple[Layout, ...]:
    """One thread (a single grid job), then the machine's N cores as one process of N
    threads and as N processes of one thread."""
    n = cores or os.cpu_count() or 1
    return tuple(dict.fromkeys((Layout(1, 1), Layout(n, 1), Layout(1, n))))


def parse_layouts(text: str, cores: int | None = None) -> tuple[Layout, ...]:
    """--layouts 1x1,Nx1,1xN: THREADSxPROCESSES, N for the machine's cores."""
    n = cores or os.cpu_count() or 1
    layouts = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(\d+|N)x(\d+|N)", part)
        values = [n if v == "N" else int(v) for v in match.groups()] if match else [0, 0]
        if min(values) < 1:
            raise SonicBenchError(
                f"--layouts {text!r}: give THREADSxPROCESSES, N for the {n} cores, "
                "e.g. --layouts 1x1,Nx1,1xN"
            )
        layouts.append(Layout(*values))
    if not layouts:
        raise SonicBenchError("--layouts is empty: give e.g. 1x1,Nx1,1xN")
    return tuple(dict.fromkeys(layouts))


@dataclass(frozen=True)
class CpuOnlyResult:
    layout: Layout
    windows: tuple[WindowStats, ...]
    stability: Stability
    span: tuple[float, float]  # the measured span, monotonic seconds
    latencies_ms: np.ndarray  # every answer of the measured span
    patches: int
    batches: int
    cpu_s: float  # the workers' CPU time over the measured span
    unix_offset: float = 0.0  # unix time - monotonic time, for the span's timestamps

    @property
    def unix_span(self) -> tuple[float, float]:
        return self.span[0] + self.unix_offset, self.span[1] + self.unix_offset

    @property
    def wall_s(self) -> float:
        return self.span[1] - self.span[0]

    @property
    def batch_size(self) -> float:
        return self.patches / self.batches if self.batches else float("nan")

    @property
    def inferences_per_s(self) -> float:
        return self.patches / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def seconds_per_event(self) -> float:
        """Wall seconds that the inference of a 55,000-patch event takes, per process."""
        return PATCHES_PER_EVENT * self.layout.processes / self.inferences_per_s

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _worker(model, threads, batches, session_batch, index, answers, stop, parent) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops its workers itself
    session = open_session(model, threads)
    infer(session, batches[index % len(batches)], session_batch)  # allocations, pools
    answers.put(("ready", index, 0.0, 0))
    i = index  # each process starts on another batch, as independent jobs would
    while not stop.is_set() and os.getppid() == parent:
        batch = batches[i % len(batches)]
        sent = time.monotonic()
        infer(session, batch, session_batch)
        done = time.monotonic()
        answers.put(("answer", index, done, (done - sent) * 1000.0, batch_size(batch)))
        i += 1


class _Answers:
    """The workers' answers as columns, read from their queue."""

    def __init__(self, source: mp.Queue) -> None:
        self.source = source
        self.t: list[float] = []
        self.latency: list[float] = []
        self.size: list[int] = []

    def read_until(self, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.source.get(timeout=left)
            except queue.Empty:
                return
            if message[0] == "answer":
                _, _, done, latency, size = message
                self.t.append(done)
                self.latency.append(latency)
                self.size.append(size)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.array(self.t), np.array(self.latency), np.array(self.size)

    def since(self, start: float) -> np.ndarray:
        t = np.array(self.t)
        return t[t >= start]


def _wait_ready(source: mp.Queue, workers: Sequence[mp.Process], count: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready = 0
    while ready < count:
        if any(w.exitcode not in (None, 0) for w in workers):
            raise SonicBenchError("a CPU-only worker died while loading the model")
        try:
            message = source.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() > deadline:
                raise SonicBenchError("CPU-only workers did not load the model in time") from None
            continue
        ready += message[0] == "ready"


def _cpu_seconds(workers: Sequence[mp.Process]) -> float:
    total = 0.0
    for w in workers:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(w.pid).cpu_times()
            total += times.user + times.system
    return total


def measure_layout(
    model: bytes,
    batches: Sequence[np.ndarray | Batch],
    layout: Layout,
    settings: MeasurementSettings,
    session_batch: int = DEFAULT_SESSION_BATCH,
    on_window: Callable[[WindowStats, Stability], None] | None = None,
) -> CpuOnlyResult:
    context = mp.get_context("fork")
    answers_queue = context.Queue()
    stop = context.Event()
    workers = [
        context.Process(
            target=_worker,
            args=(
                model,
                layout.threads,
                batches,
                session_batch,
                i,
                answers_queue,
                stop,
                os.getpid(),
            ),
            daemon=True,
        )
        for i in range(layout.processes)
    ]
    try:
        for w in workers:
            w.start()
        _wait_ready(answers_queue, workers, layout.processes)
        answers = _Answers(answers_queue)
        answers.read_until(time.monotonic() + settings.warmup_s)
        return _measure(answers, workers, layout, settings, on_window)
    finally:
        stop.set()
        _stop(workers, answers_queue)


def _stop(workers: Sequence[mp.Process], answers: mp.Queue) -> None:
    """Join the workers, reading what they still send so that none blocks on a full
    pipe; kill any that outlasts the timeout."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty, OSError, EOFError):
            answers.get(timeout=0.05)
    for w in workers:
        if w.is_alive():
            w.kill()
        w.join()
    answers.close()
    answers.cancel_join_thread()


def _window_end(answers: _Answers, start: float, settings: MeasurementSettings, window_s: float):
    """As a sweep's window ends (measure/level.py), on the workers' answers."""
    end = start + window_s
    answers.read_until(end)
    if not settings.window_requests:
        return end
    limit = start + max(settings.max_window_s, window_s)
    while (done := count_window_end(answers.since(start), end, settings.window_requests)) is None:
        if time.monotonic() >= limit:
            return time.monotonic()
        answers.read_until(min(limit, time.monotonic() + COUNT_POLL_S))
    return done


def _measure(answers, workers, layout, settings, on_window) -> CpuOnlyResult:
    start = time.monotonic()
    cpu_before = _cpu_seconds(workers)
    windows: list[WindowStats] = []
    window_s, t, stability = settings.window_s, start, Stability.UNSTABLE
    while len(windows) < settings.max_windows:
        if any(not w.is_alive() for w in workers):
            raise SonicBenchError(f"a CPU-only worker ({layout.label}) died while measuring")
        end = _window_end(answers, t, settings, window_s)
        times, latency, size = answers.columns()
        ok = np.ones(len(times), dtype=bool)
        current = window_stats(times, latency, size, ok, t, end)
        windows.append(current)
        t = end
        stability = assess(windows, settings.rule)
        if on_window is not None:
            on_window(current, stability)
        if stability is Stability.STABLE:
            break
        if stability is Stability.TOO_FEW:
            window_s = min(window_s * 2, settings.max_window_s)
    cpu = _cpu_seconds(workers) - cpu_before
    times, latency, size = answers.columns()
    inside = (times >= start) & (times < t)
    return CpuOnlyResult(
        layout=layout,
        windows=tuple(windows),
        stability=stability,
        span=(start, t),
        latencies_ms=latency[inside],
        patches=int(size[inside].sum()),
        batches=int(inside.sum()),
        cpu_s=cpu,
        unix_offset=time.time() - time.monotonic(),
    )


def hooks_window(hooks: LevelHooks, label: str) -> Callable[[WindowStats, Stability], None]:
    """A window's progress line through the run's hooks."""

    def show(window: WindowStats, stability: Stability) -> None:
        hooks.progress(
            f"  {label}: {window.throughput:,.0f} inf/s, avg {window.avg_ms:,.1f} ms, "
            f"{window.requests} batches [{stability.value}]"
        )

    return show
