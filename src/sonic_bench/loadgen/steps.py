"""Step boundaries of a load test: which user count was asked for when.

The watcher on the leading process (local or master) fires `events.sonic_step` whenever
the runner's target user count changes, whoever changed it (the staircase, -u, the web
UI); `StepLog.on_step` is the listener that records it.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field, replace

import gevent
from locust.runners import STATE_RUNNING, STATE_SPAWNING

WATCH_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Step:
    index: int
    users: int
    start: float  # unix seconds
    end: float | None = None
    running: int | None = None  # users that ran, as the runner (its workers) last reported

    @property
    def short_of_users(self) -> bool:
        return self.running is not None and self.running != self.users


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

    def on_running(self, running: int, **_) -> None:
        """The users running now (a worker's own heartbeat, summed by the master): the
        last count a step saw is what it ran with, which a worker that could not start
        its users leaves short of what was asked."""
        if self.steps and self.steps[-1].end is None:
            self.steps[-1] = replace(self.steps[-1], running=running)

    def close(self, when: float) -> None:
        if self.steps and self.steps[-1].end is None:
            self.steps[-1] = replace(self.steps[-1], end=when)

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def at(self, when: float) -> Step | None:
        """The step in force at `when` (None before the first)."""
        starts = [s.start for s in self.steps]
        i = bisect.bisect_right(starts, when) - 1
        return self.steps[i] if i >= 0 else None


def watch_steps(environment) -> gevent.Greenlet:
    """Fire `sonic_step` at every change of the runner's target user count, and
    `sonic_users` at every change of the count of users running."""

    def watch() -> None:
        seen, seen_running = None, None
        while True:
            runner = environment.runner
            users = runner.target_user_count
            if users != seen and users > 0:
                seen = users
                environment.events.sonic_step.fire(users=users, when=time.time())
            running = runner.user_count
            # Only while users are meant to run: the count falls to 0 as a test drains
            # (a target of 0) and stops.
            meant = users > 0 and runner.state in (STATE_RUNNING, STATE_SPAWNING)
            if running != seen_running and meant:
                seen_running = running
                environment.events.sonic_users.fire(running=running, when=time.time())
            gevent.sleep(WATCH_INTERVAL_S)

    return gevent.spawn(watch)
