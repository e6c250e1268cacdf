"""Step boundaries of a load test: which user count was asked for when."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    index: int
    users: int
    start: float  # unix seconds
    end: float | None = None


@dataclass
class StepLog:
    steps: list[Step] = field(default_factory=list)

    def begin(self, users: int, when: float) -> Step:
        if self.steps:
            last = self.steps[-1]
            self.steps[-1] = Step(last.index, last.users, last.start, when)
        step = Step(len(self.steps), users, when)
        self.steps.append(step)
        return step

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
