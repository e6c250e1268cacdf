"""Request records: one per request, appended by workers, read as columns."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


class Clock:
    """Unix seconds read off the monotonic perf_counter: no jumps, fine resolution."""

    def __init__(self) -> None:
        self._unix0 = time.time()
        self._perf0 = time.perf_counter()

    def now(self) -> float:
        return self._unix0 + (time.perf_counter() - self._perf0)


@dataclass(frozen=True)
class RequestRecord:
    worker: int
    t_scheduled: float  # equals t_send in closed loop
    t_send: float
    t_recv: float
    batch_size: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency_ms(self) -> float:
        """From the scheduled send: an open-loop request that waited counts its wait."""
        return (self.t_recv - self.t_scheduled) * 1000.0

    def row(self, step: int) -> tuple:
        """The requests.csv.gz row (REQUEST_COLUMNS order)."""
        return (
            step,
            self.worker,
            self.t_send,
            self.t_recv,
            self.latency_ms,
            self.batch_size,
            self.ok,
            self.error,
        )


class RequestLog:
    """Records of one level; workers append to their own list (append is atomic)."""

    def __init__(self, workers: int):
        self.per_worker: list[list[RequestRecord]] = [[] for _ in range(workers)]

    def records(self) -> list[RequestRecord]:
        return [r for rows in self.per_worker for r in list(rows)]

    def columns(self) -> dict[str, np.ndarray]:
        rows = self.records()
        return {
            "t_recv": np.array([r.t_recv for r in rows], dtype=float),
            "latency_ms": np.array([r.latency_ms for r in rows], dtype=float),
            "batch": np.array([r.batch_size for r in rows], dtype=np.int64),
            "ok": np.array([r.ok for r in rows], dtype=bool),
        }
