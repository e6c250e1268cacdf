"""Request records: one per request, appended by workers, read as columns."""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUEST_COLUMNS = ("step", "worker", "t_send", "t_recv", "latency_ms", "batch_size", "ok", "error")


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


class RequestLog:
    """Records of one level; workers append to their own list (append is atomic)."""

    def __init__(self, workers: int):
        self.per_worker: list[list[RequestRecord]] = [[] for _ in range(workers)]

    def add_worker(self) -> int:
        self.per_worker.append([])
        return len(self.per_worker) - 1

    def records(self) -> list[RequestRecord]:
        return [r for rows in self.per_worker for r in list(rows)]

    def columns(self) -> dict[str, np.ndarray]:
        rows = self.records()
        return {
            "t_recv": np.array([r.t_recv for r in rows], dtype=float),
            "t_send": np.array([r.t_send for r in rows], dtype=float),
            "t_scheduled": np.array([r.t_scheduled for r in rows], dtype=float),
            "latency_ms": np.array([r.latency_ms for r in rows], dtype=float),
            "batch": np.array([r.batch_size for r in rows], dtype=np.int64),
            "ok": np.array([r.ok for r in rows], dtype=bool),
        }


def append_requests(path: Path, step: int, records: list[RequestRecord]) -> None:
    """Append one level's requests to requests.csv.gz (a gzip member per level)."""
    new = not path.exists()
    lines = [",".join(REQUEST_COLUMNS)] if new else []
    for r in sorted(records, key=lambda r: r.t_send):
        error = (r.error or "").replace(",", ";").replace("\n", " ")
        lines.append(
            f"{step},{r.worker},{r.t_send:.6f},{r.t_recv:.6f},{r.latency_ms:.3f},"
            f"{r.batch_size},{int(r.ok)},{error}"
        )
    with gzip.open(path, "at", compresslevel=3) as f:
        f.write("\n".join(lines) + "\n")
