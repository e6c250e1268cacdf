"""Triton's statistics API as deltas between two snapshots (what perf_analyzer reports)."""

from __future__ import annotations

import math
from collections.abc import Sequence
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

    def __add__(self, other: ModelStats) -> ModelStats:
        return ModelStats(
            inference_count=self.inference_count + other.inference_count,
            execution_count=self.execution_count + other.execution_count,
            counts={k: self.counts.get(k, 0) + other.counts.get(k, 0) for k in _PHASES},
            nanoseconds={
                k: self.nanoseconds.get(k, 0) + other.nanoseconds.get(k, 0) for k in _PHASES
            },
            failures=self.failures + other.failures,
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


class ReplicaStats:
    """The statistics of every replica behind a gateway, each read directly: their sum is
    what a run's counts must equal, each one that replica's share. A replica that stops
    answering (drained, scaled down, crashed) keeps its last count, and is named in
    `lost`: its requests after that are not checked, which the run must say."""

    def __init__(self, endpoints: Sequence[Endpoint], model: str):
        if not endpoints:
            raise ValueError("ReplicaStats needs at least one replica")
        self.readers = [StatsReader(endpoint, model) for endpoint in endpoints]
        self.model = model
        self.endpoint = endpoints[0]
        self.urls = tuple(endpoint.url for endpoint in endpoints)
        self.last: list[ModelStats | None] = [None] * len(self.readers)
        self.lost: dict[str, str] = {}  # url -> why it could not be read

    def snapshots(self) -> tuple[ModelStats, ...]:
        """Each replica's cumulative statistics (the last known one, for a lost replica);
        ServerUnavailable once no replica answers."""
        for index, reader in enumerate(self.readers):
            try:
                self.last[index] = reader.snapshot()
            except ServerUnavailable as e:
                self.lost.setdefault(reader.endpoint.url, str(e))
        if all(url in self.lost for url in self.urls):
            raise ServerUnavailable(
                f"no replica answers for its statistics: {next(iter(self.lost.values()))}"
            )
        return tuple(s or ModelStats() for s in self.last)

    def snapshot(self) -> ModelStats:
        total = ModelStats()
        for stats in self.snapshots():
            total = total + stats
        return total


def stats_for(
    endpoint: Endpoint, replicas: Sequence[Endpoint], model: str
) -> StatsReader | ReplicaStats:
    """The server's statistics, or the sum of every replica's behind a gateway."""
    return ReplicaStats(replicas, model) if replicas else StatsReader(endpoint, model)


def replica_rows(
    step: int,
    urls: Sequence[str],
    before: Sequence[ModelStats],
    after: Sequence[ModelStats],
    inferences_per_s: float,
    lost: Sequence[str] = (),
) -> list[dict]:
    """Each replica's part of a level: its inferences, its share of them, the level's
    throughput split by that share, its executed batch size and queue time."""
    deltas = [a - b for a, b in zip(after, before, strict=True)]
    total = sum(d.inference_count for d in deltas)
    rows = []
    for url, delta in zip(urls, deltas, strict=True):
        share = delta.inference_count / total if total else math.nan
        rows.append(
            {
                "step": step,
                "replica": url,
                "inferences": delta.inference_count,
                "share": share,
                "inferences_per_s": share * inferences_per_s,
                "server_batch_avg": delta.batch_avg,
                "server_queue_us": delta.average_us("queue"),
                "reachable": url not in lost,
            }
        )
    return rows
