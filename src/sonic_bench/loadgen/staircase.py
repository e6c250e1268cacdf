"""The staircase as a pure schedule: which user count is wanted how far into the run.

Kept apart from the Locust shape (shape.py) so that what only plans a run never imports
Locust (importing Locust monkey-patches the whole process for gevent).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Staircase:
    users: tuple[int, ...]
    holds_s: tuple[float, ...]

    def target(self, elapsed_s: float) -> int | None:
        """Users wanted `elapsed_s` into the run; None once the last step is over."""
        for users, hold in zip(self.users, self.holds_s, strict=True):
            if elapsed_s < hold:
                return users
            elapsed_s -= hold
        return None

    @property
    def duration_s(self) -> float:
        return sum(self.holds_s)
