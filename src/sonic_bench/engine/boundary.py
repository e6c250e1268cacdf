"""The one boundary both load engines implement, as perf_analyzer's `ClientBackend` is
one interface over its transports: the requests prepared once and a level in, the level
measured (its row, its span, its requests where the engine keeps them) out. A sweep
neither knows nor asks which engine it drives.

- `NativeEngine` (here): the event loop over the engine's own connections, every
  request a record;
- `perf_analyzer.engine.PerfAnalyzerEngine`: NVIDIA's binary on the same levels and
  batches, its aggregate report read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.level import Level, LevelHooks, MeasurementSettings, measure_level
from sonic_bench.measure.measured import MeasuredLevel
from sonic_bench.triton.stats import ReplicaStats, StatsReader


class LevelEngine(Protocol):
    name: str

    def measure(self, step: int, level: Level) -> MeasuredLevel: ...


@dataclass
class NativeEngine:
    """sonic-bench's own engine: one connection per request in flight, one loop."""

    endpoint: Endpoint
    model: str
    batches: EncodedBatches
    settings: MeasurementSettings
    stats: StatsReader | ReplicaStats | None
    hooks: LevelHooks
    name: str = "native"

    def measure(self, step: int, level: Level) -> MeasuredLevel:
        def make_client() -> InferClient:
            return InferClient(self.endpoint, self.model, self.batches)

        result = measure_level(step, level, make_client, self.settings, self.stats, self.hooks)
        return MeasuredLevel.native(result)
