"""What one grid job's event costs: its requests, its other CPU work, its preprocessing.

At full scale (the paper's) an event is ~55,000 patches with 110 s of non-ML work and
7 s of preprocessing. A reduced event keeps a fraction of a full event's requests (so
the batch sizes stay those of the setting) and shrinks the CPU work by the same
fraction of patches: the ratio that decides where the server saturates is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sonic_bench.model.signature import Batch
from sonic_bench.workload.detector import PATCHES_PER_EVENT
from sonic_bench.workload.pool import BatchPool


@dataclass(frozen=True)
class EventPlan:
    batches: tuple[Batch, ...]
    other_s: float
    preprocess_s: float

    @property
    def patches(self) -> int:
        return sum(b.size for b in self.batches)


def plan_events(
    pool: BatchPool,
    event_scale: float,
    other_full_s: float,
    preprocess_full_s: float,
    variants: int = 8,
) -> list[EventPlan]:
    """Reduced events: evenly spread subsets of each simulated event's requests, shifted
    per variant so that consecutive events do not repeat the same patches."""
    plans = []
    for requests in pool.events:
        keep = max(1, round(len(requests) * event_scale))
        spread = np.linspace(0, len(requests), keep, endpoint=False).astype(int)
        shifts = range(variants) if keep < len(requests) else range(1)
        for shift in shifts:
            picks = (spread + shift * len(requests) // (variants * keep)) % len(requests)
            batches = tuple(Batch((requests[i].patches,), requests[i].size) for i in picks)
            fraction = sum(b.size for b in batches) / PATCHES_PER_EVENT
            plans.append(EventPlan(batches, other_full_s * fraction, preprocess_full_s * fraction))
    return plans


def plan_model_events(
    batches: Sequence[Batch],
    requests_per_event: int,
    event_scale: float,
    other_full_s: float,
    preprocess_full_s: float,
) -> list[EventPlan]:
    """Events of a model not fed the ProtoDUNE-SP workload: `requests_per_event` of the
    batches per full event, in turn. A reduced event keeps `event_scale` of them (at
    least one) and the same fraction of the CPU work, as a reduced ProtoDUNE-SP event
    does, so the ratio that decides where the server saturates is unchanged."""
    keep = max(1, round(requests_per_event * event_scale))
    fraction = keep / requests_per_event
    events = max(1, len(batches) // keep)
    return [
        EventPlan(
            tuple(batches[(e * keep + i) % len(batches)] for i in range(keep)),
            other_full_s * fraction,
            preprocess_full_s * fraction,
        )
        for e in range(events)
    ]
