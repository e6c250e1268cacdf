"""Where a long job stands: done of total, time elapsed, and an estimate of the time left
(the average time of the levels done so far, times the levels left)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def clock_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


@dataclass
class JobProgress:
    total: int
    began: float = field(default_factory=time.monotonic)
    done: int = 0

    def finished_one(self) -> None:
        self.done += 1

    def left_s(self) -> float | None:
        if not self.done:
            return None
        elapsed = time.monotonic() - self.began
        return elapsed / self.done * (self.total - self.done)

    def line(self, what: str) -> str:
        elapsed = clock_text(time.monotonic() - self.began)
        left = self.left_s()
        estimate = "estimating the time left" if left is None else f"about {clock_text(left)} left"
        return f"[{self.done + 1}/{self.total}] {what} · {elapsed} elapsed · {estimate}"
