"""An in-process reference measured in the same run, interleaved with the served levels,
so that a slower or busier machine does not read as a slower server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sonic_bench.measure.baseline import DEFAULT_SESSION_BATCH, open_session, time_inference
from sonic_bench.model.signature import Batch


class InProcessReference:
    def __init__(self, model: Path | bytes, batches: Sequence[np.ndarray | Batch], seconds: float):
        self.batches = list(batches)
        self.seconds = seconds
        self.session = open_session(model, 0)  # all cores, like the embedded server

    def measure(self) -> float:
        return time_inference(self.session, self.batches, self.seconds, DEFAULT_SESSION_BATCH)
