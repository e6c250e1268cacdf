"""Triton's statistics API as deltas between two snapshots (what perf_analyzer reports)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.triton.client import ServerUnavailable, admin_client

_PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ModelStats:
    inference_count: int = 0  # patches
    execution_count: int = 0  # batches the model ran
    counts: dict[str, int] = field(default_factory=dict)  # requests per phase
    nanoseconds: dict[str, int] = field(default_factory=dict)  # total time per phase
    failures: int = 0

    def __sub__(self, earlier: ModelStats) -> ModelStats:
        return ModelStats(
            inference_count=self.inference_count - earlier.inference_count,
            execution_count=self.execution_count - earlier.execution_count,
            counts={k: v - earlier.counts.get(k, 0) for k, v in self.counts.items()},
            nanoseconds={k: v - earlier.nanoseconds.get(k, 0) for k, v in self.nanoseconds.items()},
            failures=self.failures - earlier.failures,
        )

    def average_us(self, phase: str) -> float:
        count = self.counts.get(phase, 0)
        return self.nanoseconds.get(phase, 0) / count / 1000.0 if count else float("nan")

    @property
    def batch_avg(self) -> float:
        if not self.execution_count:
            return float("nan")
        return self.inference_count / self.execution_count

    def as_row(self) -> dict[str, float]:
        return {
            "server_queue_us": self.average_us("queue"),
            "server_compute_input_us": self.average_us("compute_input"),
            "server_compute_infer_us": self.average_us("compute_infer"),
            "server_compute_output_us": self.average_us("compute_output"),
            "server_batch_avg": self.batch_avg,
        }


def _parse(entry: dict) -> ModelStats:
    stats = entry.get("inference_stats", {})
    return ModelStats(
        inference_count=int(entry.get("inference_count", 0)),
        execution_count=int(entry.get("execution_count", 0)),
        counts={p: int(stats.get(p, {}).get("count", 0)) for p in _PHASES},
        nanoseconds={p: int(stats.get(p, {}).get("ns", 0)) for p in _PHASES},
        failures=int(stats.get("fail", {}).get("count", 0)),
    )


class StatsReader:
    """Reads one model's cumulative statistics from a running server."""

    def __init__(self, endpoint: Endpoint, model: str):
        self.endpoint = endpoint
        self.model = model
        self._client = admin_client(endpoint)

    def snapshot(self) -> ModelStats:
        try:
            data = self._client.get_inference_statistics(self.model)
        except Exception as e:  # any transport failure means the same thing here
            raise ServerUnavailable(
                f"cannot read statistics of {self.model!r} from {self.endpoint.url}: "
                f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
            ) from None
        entries = data.get("model_stats", [])
        return _parse(entries[0]) if entries else ModelStats()
