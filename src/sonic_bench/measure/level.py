"""One load level: warm up, measure in windows until stable, and account for every request.

Hooks are the seam between measurement and presentation: the CLI subscribes to them to
show progress; nothing here prints.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import psutil

from sonic_bench.engine.client import InferClient, is_rejection
from sonic_bench.engine.loop import ClosedLoop, LoadDriver, OpenLoop, wait_until
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.records import Clock, RequestRecord
from sonic_bench.measure.stats import LatencySummary, summarize_latencies
from sonic_bench.measure.windows import (
    Stability,
    StabilityRule,
    WindowStats,
    assess,
    count_window_end,
    window_stats,
)
from sonic_bench.results.schema import iso_utc
from sonic_bench.triton.stats import ModelStats, StatsReader

STATS_SETTLE_S = 3.0  # Triton counts an execution just after answering it
CLIENT_BOUND_CPU_PERCENT = 90.0  # of one core: the load loop is one thread


@dataclass(frozen=True)
class Level:
    """Closed loop at `concurrency`, or open loop at `rate` requests/s."""

    concurrency: int | None = None
    rate: float | None = None
    poisson: bool = False
    max_in_flight: int = 64

    @property
    def label(self) -> str:
        if self.rate is None:
            return f"concurrency {self.concurrency}"
        return f"rate {self.rate:g}/s{' (Poisson)' if self.poisson else ''}"


@dataclass(frozen=True)
class MeasurementSettings:
    window_s: float = 5.0
    warmup_s: float = 2.0
    max_windows: int = 10
    max_window_s: float = 60.0
    rule: StabilityRule = field(default_factory=StabilityRule)
    # Count windows (perf_analyzer's count_windows): a window also holds at least this
    # many answers, however long that takes (up to max_window_s). Slow, large requests
    # and dynamic batching's bursts then fill every window alike. 0: time windows only.
    window_requests: int = 0
    # The load loop polls its sockets without sleeping for up to this long while requests
    # are out (0: it sleeps until one is readable). On a virtual machine an idle core
    # wakes late, and a client that sleeps measures a slower server at sub-millisecond
    # requests (figures: docs/sweep.md and bench/README.md).
    busy_poll_us: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            (self.busy_poll_us >= 0, "--busy-poll must not be negative"),
            (
                0 < self.window_s < math.inf,
                f"--window {self.window_s:g}: give a positive number of seconds",
            ),
            (
                0 <= self.warmup_s < math.inf,
                f"--warmup {self.warmup_s:g}: give a number of seconds from 0 up",
            ),
            (
                self.busy_poll_us < math.inf,
                "--busy-poll: give a finite number of microseconds",
            ),
            (self.max_windows >= 1, f"--max-windows {self.max_windows}: give at least 1"),
            (self.window_requests >= 0, "--window-requests must not be negative"),
            (
                0 < self.rule.tolerance < 1,
                f"--stability {self.rule.tolerance:g}: give a fraction such as 0.1",
            ),
        )
        for ok, message in checks:
            if not ok:  # NaN fails every comparison and lands here too
                raise SonicBenchError(message)


@dataclass
class LevelHooks:
    """The seam between measurement and presentation: on_window(level, window, stability)
    as a level goes, on_warning(message), on_progress(message) for what a run is doing."""

    on_window: list[Callable[[Level, WindowStats, Stability], None]] = field(default_factory=list)
    on_progress: list[Callable[[str], None]] = field(default_factory=list)
    on_warning: list[Callable[[str], None]] = field(default_factory=list)

    def window(self, level: Level, stats: WindowStats, stability: Stability) -> None:
        for hook in self.on_window:
            hook(level, stats, stability)

    def warning(self, message: str) -> None:
        for hook in self.on_warning:
            hook(message)

    def progress(self, message: str) -> None:
        for hook in self.on_progress:
            hook(message)


@dataclass(frozen=True)
class LevelResult:
    step: int
    level: Level
    windows: tuple[WindowStats, ...]
    stability: Stability
    span: tuple[float, float]  # measured span, unix seconds
    records: tuple[RequestRecord, ...]  # every request of the level, warm-up included
    server: ModelStats | None  # over the measured span
    server_level: ModelStats | None  # over the whole level, after all answers
    client_cpu_percent: float
    warnings: tuple[str, ...] = ()
    failure: str | None = None  # why the level ended early, if it did
    shared_server: bool = False  # Triton counted requests of another client too

    def measured(self) -> list[RequestRecord]:
        start, end = self.span
        return [r for r in self.records if start <= r.t_recv < end]

    @property
    def duration_s(self) -> float:
        return self.span[1] - self.span[0]

    def latency(self) -> LatencySummary:
        return summarize_latencies([r.latency_ms for r in self.measured() if r.ok])

    @property
    def inferences_per_s(self) -> float:
        return _per_s(sum(r.batch_size for r in self.measured() if r.ok), self.duration_s)

    @property
    def requests_per_s(self) -> float:
        return _per_s(sum(1 for r in self.measured() if r.ok), self.duration_s)

    @property
    def send_lag_ms(self) -> float:
        """Open loop: how late sends left against their schedule, on average."""
        lags = [(r.t_send - r.t_scheduled) * 1000 for r in self.measured()]
        return float(np.mean(lags)) if lags else float("nan")

    def as_row(self) -> dict:
        measured = self.measured()
        ok = [r for r in measured if r.ok]
        row = {
            "step": self.step,
            "concurrency": self.level.concurrency,
            "rate": self.level.rate,
            "batch_size": float(np.mean([r.batch_size for r in ok])) if ok else None,
            "started_at": iso_utc(self.span[0]),
            "ended_at": iso_utc(self.span[1]),
            "requests": len(ok),
            # Every failed request of the level counts, also one that failed during the
            # warm-up or ended after the last window: a level is clean only if none did.
            "errors": sum(1 for r in self.records if not r.ok),
            "rejected": sum(1 for r in self.records if not r.ok and is_rejection(r.error)),
            "inferences_per_s": self.inferences_per_s,
            "requests_per_s": self.requests_per_s,
            "stable": self.stability is Stability.STABLE,
            "client_cpu_percent": self.client_cpu_percent,
            "send_lag_ms": self.send_lag_ms if self.level.rate is not None else None,
            **self.latency().as_row(),
        }
        if self.server is not None:
            row.update(self.server.as_row())
        return row


def _per_s(count: float, seconds: float) -> float:
    """A rate; none for a level that ended before its first window (NaN, not infinity)."""
    return count / seconds if seconds > 0 else float("nan")


def _driver(
    level: Level, make_client: Callable[[], InferClient], clock: Clock, busy_poll_s: float
) -> LoadDriver:
    if level.rate is None:
        return ClosedLoop(make_client, level.concurrency or 1, clock, busy_poll_s)
    return OpenLoop(make_client, level.rate, level.poisson, level.max_in_flight, clock, busy_poll_s)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _settled(stats: StatsReader, before: ModelStats, inferences: int) -> ModelStats:
    deadline = time.monotonic() + STATS_SETTLE_S
    while True:
        delta = stats.snapshot() - before
        if delta.inference_count >= inferences or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


def measure_level(
    step: int,
    level: Level,
    make_client: Callable[[], InferClient],
    settings: MeasurementSettings,
    stats: StatsReader | None,
    hooks: LevelHooks | None = None,
    clock: Clock | None = None,
) -> LevelResult:
    hooks = hooks or LevelHooks()
    clock = clock or Clock()
    process = psutil.Process()
    level_before = stats.snapshot() if stats else None
    driver = _driver(level, make_client, clock, settings.busy_poll_us / 1e6)
    driver.start()
    try:
        windows, stability, span, server, cpu, failure = _measure(
            level, driver, settings, stats, hooks, clock, process
        )
    finally:
        driver.stop()
    failure = driver.failure or failure
    records = tuple(driver.log.records())
    server_level = None
    if stats and level_before is not None and failure is None:
        done = sum(r.batch_size for r in records if r.ok)
        server_level = _settled(stats, level_before, done)
    warnings = _warnings(level, stability, cpu, settings.busy_poll_us > 0)
    warnings += failed_requests_warnings(level.label, records, failure)
    shared: tuple[str, ...] = ()
    if server_level is not None:
        shared = shared_server_warnings(level.label, stats.model, len(records), server_level)
    warnings += shared
    for message in warnings:
        hooks.warning(message)
    return LevelResult(
        step,
        level,
        tuple(windows),
        stability,
        span,
        records,
        server,
        server_level,
        cpu,
        warnings,
        failure,
        bool(shared),
    )


# Requests Triton counted for the model beyond those this run sent: a margin for the
# counter's timing at a level's edges; more means another client shares the server.
SHARED_SERVER_MARGIN = 0.02
SHARED_SERVER_SLACK = 2


def failed_requests_warnings(
    label: str, records: tuple[RequestRecord, ...], failure: str | None
) -> tuple[str, ...]:
    """What failed in a level, counted and with its reasons, most frequent first."""
    warnings = []
    if failure is not None:
        warnings.append(f"{label}: the level ended early: {failure}")
    failed = [r.error or "unknown" for r in records if not r.ok]
    rejected = [reason for reason in failed if is_rejection(reason)]
    errors = [reason for reason in failed if not is_rejection(reason)]
    if rejected:
        warnings.append(
            f"{label}: rejected by the gateway or server, never served: {len(rejected)} of "
            f"{len(records)} requests ({_reasons(rejected)})"
        )
    if errors:
        warnings.append(
            f"{label}: {len(errors)} of {len(records)} requests failed ({_reasons(errors)})"
        )
    return tuple(warnings)


def _reasons(failed: list[str]) -> str:
    """The reasons, most frequent first, each with its count."""
    common = Counter(failed).most_common()
    said = "; ".join(f"{n} x {reason}" for reason, n in common[:3])
    return said + (f"; {len(common) - 3} other reasons" if len(common) > 3 else "")


def shared_server_warnings(
    label: str, model: str, sent: int, server: ModelStats
) -> tuple[str, ...]:
    """Triton counted more requests for the model than the `sent` of this level (or
    run): another client is on the same server, and the figures are not this run's
    alone. Every request sent counts, failed ones too: one the client gave up on (a bad
    answer, a reset after the answer) may still be a success in Triton's books."""
    counted = server.counts.get("success", 0)
    if counted <= sent * (1 + SHARED_SERVER_MARGIN) + SHARED_SERVER_SLACK:
        return ()
    return (
        f"{label}: shared server: Triton counted {counted} requests for {model} where this "
        f"run sent {sent}: another client is using the model, so these figures are not "
        "this run's alone",
    )


def _measure(level, driver, settings, stats, hooks, clock, process):
    _warm_up(driver, clock, clock.now() + settings.warmup_s)
    start = clock.now()
    server_before = stats.snapshot() if stats else None
    cpu_before = _cpu_seconds(process)
    windows: list[WindowStats] = []
    window_s, t, stability = settings.window_s, start, Stability.UNSTABLE
    while len(windows) < settings.max_windows and driver.failure is None:
        end = _window_end(driver, t, t + window_s, settings, clock)
        columns = driver.log.columns()
        current = window_stats(
            columns["t_recv"], columns["latency_ms"], columns["batch"], columns["ok"], t, end
        )
        windows.append(current)
        t = end
        if current.requests == 0 and current.errors > 0:
            failed = driver.log.last_error()
            return windows, stability, (start, t), None, 0.0, f"every request failed: {failed}"
        stability = assess(windows, settings.rule)
        hooks.window(level, current, stability)
        if stability is Stability.STABLE:
            break
        if stability is Stability.TOO_FEW:
            window_s = min(window_s * 2, settings.max_window_s)
    if driver.failure:  # the caller says why
        return windows, stability, (start, t), None, 0.0, None
    cpu = 100.0 * (_cpu_seconds(process) - cpu_before) / (t - start)
    server = stats.snapshot() - server_before if stats and server_before else None
    return windows, stability, (start, t), server, cpu, None


COUNT_POLL_S = 0.02


def _warm_up(driver: LoadDriver, clock: Clock, until: float) -> None:
    """Wait out the warm-up, unless the driver stops on its own first."""
    while driver.failure is None and clock.now() < until:
        time.sleep(min(COUNT_POLL_S, max(0.0, until - clock.now())))


def _window_end(driver, start: float, end: float, settings: MeasurementSettings, clock) -> float:
    """When the window that began at `start` ends: at `end`, or with count windows once it
    holds `window_requests` answers (just after the last of them), at most max_window_s."""
    wait_until(clock, end)
    needed = settings.window_requests
    if not needed:
        return end
    limit = start + max(settings.max_window_s, end - start)
    while True:
        columns = driver.log.columns()
        answered = columns["t_recv"][columns["ok"] & (columns["t_recv"] >= start)]
        if (done := count_window_end(answered, end, needed)) is not None:
            return done
        if clock.now() >= limit or driver.failure:
            return clock.now()
        time.sleep(COUNT_POLL_S)


def _warnings(
    level: Level, stability: Stability, cpu_percent: float, busy_polling: bool
) -> tuple[str, ...]:
    warnings = []
    if stability is not Stability.STABLE:
        warnings.append(f"{level.label}: not stable ({stability.value}) within the window limit")
    if cpu_percent >= CLIENT_BOUND_CPU_PERCENT and not busy_polling:  # polling is chosen
        warnings.append(
            f"{level.label}: the client used {cpu_percent:.0f}% of a core: the client, not the "
            "server, may be the bottleneck (use shared memory, or spread the load: Locust workers)"
        )
    return tuple(warnings)
