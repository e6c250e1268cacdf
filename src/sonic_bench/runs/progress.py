"""Where a long job stands: done of total, time elapsed, and an estimate of the time left.

A level lasts its warm-up plus its windows, and with count windows a window lasts until
it holds its answers: a level of batch ~1,693 takes seven times one of batch ~235 at the
same throughput. So the estimate is a model of each level left (its batch, its
concurrency, the throughput measured at that concurrency so far), plus the time levels
done really took beyond what the same model said of them, on average.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


def clock_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class LevelTiming:
    """The window settings that decide how long a level lasts."""

    warmup_s: float = 2.0
    window_s: float = 5.0
    window_requests: int = 0
    windows: int = 3  # the fewest a level can be stable in


@dataclass
class PlannedLevel:
    run: int  # which run (configuration, repetition) it belongs to
    batch: float  # requests' batch size: a hint until the run's requests are built
    concurrency: float | None = None
    rate: float | None = None  # open loop: requests per second


@dataclass(frozen=True)
class DoneLevel:
    planned: PlannedLevel
    seconds: float
    inferences_per_s: float


@dataclass
class JobProgress:
    planned: Sequence[PlannedLevel]
    timing: LevelTiming = field(default_factory=LevelTiming)
    clock: Callable[[], float] = time.monotonic
    began: float | None = None
    done: list[DoneLevel] = field(default_factory=list)
    _level_began: float | None = None

    def __post_init__(self) -> None:
        self.began = self.clock() if self.began is None else self.began

    @property
    def total(self) -> int:
        return len(self.planned)

    def run_begins(self, batch: float) -> None:
        """The next level's run has its requests: their average batch replaces the hint."""
        if len(self.done) >= self.total:
            return
        run = self.planned[len(self.done)].run
        for level in self.planned:
            if level.run == run:
                level.batch = batch

    def level_begins(self) -> None:
        self._level_began = self.clock()

    def finished_one(self, inferences_per_s: float | None = None) -> None:
        now = self.clock()
        began = self._level_began if self._level_began is not None else now
        level = self.planned[min(len(self.done), self.total - 1)]
        rate = float(inferences_per_s) if inferences_per_s else float("nan")
        self.done.append(DoneLevel(level, now - began, rate))
        self._level_began = None

    def _throughput_at(self, level: PlannedLevel) -> float | None:
        """Inferences/s measured so far at the nearest load to this level's."""
        known = [d for d in self.done if np.isfinite(d.inferences_per_s)]
        if not known:
            return None
        load = level.rate or level.concurrency or 1.0

        def distance(d: DoneLevel) -> float:
            other = d.planned.rate or d.planned.concurrency or 1.0
            return abs(np.log(other / load))

        nearest = min(distance(d) for d in known)
        return float(np.median([d.inferences_per_s for d in known if distance(d) == nearest]))

    def modelled_s(self, level: PlannedLevel) -> float | None:
        """The level's duration by the window settings alone."""
        t = self.timing
        window = t.window_s
        if t.window_requests:
            if level.rate is not None:
                requests_per_s = level.rate
            else:
                throughput = self._throughput_at(level)
                if throughput is None:
                    return None
                requests_per_s = throughput / max(level.batch, 1.0)
            window = max(window, t.window_requests / requests_per_s)
        return t.warmup_s + t.windows * window

    def left_s(self) -> float | None:
        if not self.done:
            return None
        modelled = [self.modelled_s(d.planned) for d in self.done]
        spent = sum(d.seconds for d in self.done)
        # What levels really took beyond the window settings (starting the load, the
        # server's statistics settling, a window more now and then), per level.
        extra = (spent - sum(modelled)) / len(self.done) if all(modelled) else None
        left = 0.0
        for level in self.planned[len(self.done) :]:
            modelled_s = self.modelled_s(level)
            if extra is None or modelled_s is None:
                left += spent / len(self.done)  # the average level so far
            else:
                left += max(modelled_s + extra, 0.0)
        if self._level_began is not None:
            left -= min(self.clock() - self._level_began, left)
        return max(left, 0.0)

    def line(self, what: str) -> str:
        elapsed = clock_text(self.clock() - self.began)
        left = self.left_s()
        estimate = "estimating the time left" if left is None else f"about {clock_text(left)} left"
        at = min(len(self.done) + 1, self.total)
        return f"[{at}/{self.total}] {what} · {elapsed} elapsed · {estimate}"
