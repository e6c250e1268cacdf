"""A pool of pre-built request batches that load tests replay, so that building patches
never slows the load. Built from a workload file or simulated on the spot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonic_bench.workload.batching import RequestBatch, cut_requests
from sonic_bench.workload.dataset import Dataset
from sonic_bench.workload.event import DEFAULT_SEED, simulate_event


@dataclass(frozen=True)
class BatchPool:
    """Request batches of whole events, in the order the module sends them."""

    events: tuple[tuple[RequestBatch, ...], ...]
    setting: int
    seed: int
    event_scale: float

    @property
    def batches(self) -> list[RequestBatch]:
        return [batch for event in self.events for batch in event]

    @property
    def avg_batch_size(self) -> float:
        sizes = [b.size for b in self.batches]
        return float(np.mean(sizes)) if sizes else 0.0

    @property
    def patches_per_event(self) -> float:
        return float(np.mean([sum(b.size for b in e) for e in self.events]))

    @property
    def requests_per_event(self) -> float:
        return float(np.mean([len(e) for e in self.events]))

    def sample(self, n: int) -> list[RequestBatch]:
        """`n` batches with the pool's mix of sizes (evenly spaced quantiles of the sizes,
        so the remainders of each plane are kept in proportion), in a fixed shuffled order."""
        batches = self.batches
        if n >= len(batches):
            return batches
        by_size = sorted(range(len(batches)), key=lambda i: (batches[i].size, i))
        picks = [by_size[i] for i in np.linspace(0, len(batches) - 1, n).round().astype(int)]
        order = np.random.default_rng(self.seed).permutation(len(picks))
        return [batches[picks[i]] for i in order]


def simulated_pool(
    setting: int,
    n_events: int = 1,
    event_scale: float = 1.0,
    seed: int = DEFAULT_SEED,
    on_event: Callable[[int], None] | None = None,
) -> BatchPool:
    events = []
    for index in range(n_events):
        events.append(event_batches(setting, index, event_scale, seed))
        if on_event:
            on_event(index)
    return BatchPool(tuple(events), setting, seed, event_scale)


def event_batches(
    setting: int, index: int, event_scale: float = 1.0, seed: int = DEFAULT_SEED
) -> tuple[RequestBatch, ...]:
    """Event `index` of the seed's sequence, cut into the setting's request batches (the
    same as a pool's event `index`, made alone)."""
    event = simulate_event(seed, index, event_scale)
    return tuple(cut_requests(event.groups(), index, setting))


def dataset_pool(path: Path, setting: int, n_events: int | None = None) -> BatchPool:
    with Dataset(path) as data:
        count = min(n_events or data.header.n_events, data.header.n_events)
        events = tuple(tuple(cut_requests(data.groups(i), i, setting)) for i in range(count))
        return BatchPool(events, setting, data.header.seed, data.header.event_scale)
