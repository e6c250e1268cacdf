"""Step boundaries of a load test: which user count was asked for when.

The watcher on the leading process (local or master) fires `events.sonic_step` whenever
the runner's target user count changes, whoever changed it (the staircase, -u, the web
UI); `StepLog.on_step` is the listener that records it.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

import gevent

WATCH_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Step:
    index: int
    users: int
    start: float  # unix seconds
    end: float | None = None


@dataclass
class StepLog:
    steps: list[Step] = field(default_factory=list)

    def on_step(self, users: int, when: float, **_) -> None:
        if self.steps:
            last = self.steps[-1]
            if last.end is None and last.users == users:
                return
            self.close(when)
        self.steps.append(Step(len(self.steps), users, when))

    def close(self, when: float) -> None:
        if self.steps and self.steps[-1].end is None:
            last = self.steps[-1]
            self.steps[-1] = Step(last.index, last.users, last.start, when)

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def at(self, when: float) -> Step | None:
        """The step in force at `when` (None before the first)."""
        starts = [s.start for s in self.steps]
        i = bisect.bisect_right(starts, when) - 1
        return self.steps[i] if i >= 0 else None


def watch_steps(environment) -> gevent.Greenlet:
    """Fire `sonic_step` at every change of the runner's target user count."""

    def watch() -> None:
        seen = None
        while True:
            users = environment.runner.target_user_count
            if users != seen and users > 0:
                seen = users
                environment.events.sonic_step.fire(users=users, when=time.time())
            gevent.sleep(WATCH_INTERVAL_S)

    return gevent.spawn(watch)
