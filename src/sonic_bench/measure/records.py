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


COLUMN_TYPES = {"t_recv": float, "latency_ms": float, "batch": np.int64, "ok": bool}


class RequestLog:
    """Every request of one level. The load driver's thread appends plain tuples: cheap,
    and left alone by the garbage collector (a record object per request made its full
    collections walk every request of the level while measuring). Read as columns, each
    row converted once: the windows read the log many times a level."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []  # RequestRecord's fields, in order
        self._converted = 0
        self._columns = {name: np.empty(0, kind) for name, kind in COLUMN_TYPES.items()}

    def append(
        self,
        worker: int,
        t_scheduled: float,
        t_send: float,
        t_recv: float,
        batch_size: int,
        error: str | None = None,
    ) -> None:
        self._rows.append((worker, t_scheduled, t_send, t_recv, batch_size, error))

    def records(self) -> list[RequestRecord]:
        return [RequestRecord(*row) for row in self._rows[: len(self._rows)]]

    def last_error(self) -> str | None:
        for row in reversed(self._rows[: len(self._rows)]):
            if row[5] is not None:
                return row[5]
        return None

    def columns(self) -> dict[str, np.ndarray]:
        """t_recv (s), latency_ms (from the scheduled send), batch, ok: one entry per
        request so far."""
        end = len(self._rows)
        new = self._rows[self._converted : end]
        if new:
            scheduled = np.array([row[1] for row in new], dtype=float)
            received = np.array([row[3] for row in new], dtype=float)
            added = {
                "t_recv": received,
                "latency_ms": (received - scheduled) * 1000.0,
                "batch": np.array([row[4] for row in new], dtype=np.int64),
                "ok": np.array([row[5] is None for row in new], dtype=bool),
            }
            for name, values in added.items():
                self._columns[name] = np.concatenate([self._columns[name], values])
            self._converted = end
        return dict(self._columns)
