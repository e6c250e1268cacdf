"""The CPU-only baseline: the same ONNX model run in-process, as one grid job runs it.

Timed over whole batches for a fixed wall-clock span (no sleeping); CPU time is read
from the process clock so a busy machine shows up as CPU < wall.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sonic_bench.model.emtrackmichel import INPUT_NAME
from sonic_bench.model.signature import Batch
from sonic_bench.workload.detector import PATCHES_PER_EVENT

DEFAULT_SESSION_BATCH = 256  # the served model's `session_batch`: like with like


@dataclass(frozen=True)
class BaselineResult:
    threads: int
    batch_size: float  # average patches per batch
    batches: int
    patches: int
    wall_s: float
    cpu_s: float
    latencies_ms: tuple[float, ...]

    @property
    def inferences_per_s(self) -> float:
        return self.patches / self.wall_s

    @property
    def seconds_per_event(self) -> float:
        """Wall seconds that the inference of a 55,000-patch event takes."""
        return PATCHES_PER_EVENT / self.inferences_per_s

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s


def open_session(model: Path | bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: one per core
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def infer(
    session: ort.InferenceSession, batch: np.ndarray | Batch, session_batch: int
) -> list[np.ndarray]:
    """Run a batch in chunks of `session_batch`, as the served model does: an array of
    EmTrackMichelId's patches, or any model's `Batch` (its inputs in the graph's order)."""
    tensors = batch.tensors if isinstance(batch, Batch) else (batch,)
    names = [i.name for i in session.get_inputs()] if isinstance(batch, Batch) else [INPUT_NAME]
    size = len(tensors[0])
    chunks = [
        session.run(
            None, {n: t[i : i + session_batch] for n, t in zip(names, tensors, strict=True)}
        )
        for i in range(0, size, session_batch)
    ]
    if len(chunks) == 1:
        return chunks[0]
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def time_inference(
    session: ort.InferenceSession,
    batches: Sequence[np.ndarray | Batch],
    threads: int,
    duration_s: float,
    session_batch: int = DEFAULT_SESSION_BATCH,
    min_batches: int = 3,
) -> BaselineResult:
    infer(session, batches[0], session_batch)  # warm-up: allocations, thread pool
    latencies, patches, i = [], 0, 0
    cpu0, began = time.process_time(), time.perf_counter()
    now = began
    while now - began < duration_s or i < min_batches:
        batch = batches[i % len(batches)]
        infer(session, batch, session_batch)
        sent, now = now, time.perf_counter()
        latencies.append((now - sent) * 1000.0)
        patches += batch.size if isinstance(batch, Batch) else len(batch)
        i += 1
    return BaselineResult(
        threads=threads,
        batch_size=patches / i,
        batches=i,
        patches=patches,
        wall_s=now - began,
        cpu_s=time.process_time() - cpu0,
        latencies_ms=tuple(latencies),
    )
