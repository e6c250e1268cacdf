"""In-process inference: the same ONNX model run as one grid job runs it.

`time_inference` times whole batches for a fixed wall-clock span (no sleeping), for the
in-process reference a sweep measures between its levels; `measure/cpu_only.py` is the
CPU-only baseline built on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sonic_bench.model.emtrackmichel import INPUT_NAME
from sonic_bench.model.signature import Batch

DEFAULT_SESSION_BATCH = 256  # the served model's `session_batch`: like with like


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


def batch_size(batch: np.ndarray | Batch) -> int:
    return batch.size if isinstance(batch, Batch) else len(batch)


def time_inference(
    session: ort.InferenceSession,
    batches: Sequence[np.ndarray | Batch],
    duration_s: float,
    session_batch: int = DEFAULT_SESSION_BATCH,
    min_batches: int = 3,
) -> float:
    """Inferences per second over at least `duration_s` (and `min_batches`)."""
    infer(session, batches[0], session_batch)  # warm-up: allocations, thread pool
    patches, i = 0, 0
    began = time.perf_counter()
    now = began
    while now - began < duration_s or i < min_batches:
        batch = batches[i % len(batches)]
        infer(session, batch, session_batch)
        now = time.perf_counter()
        patches += batch_size(batch)
        i += 1
    return patches / (now - began)
