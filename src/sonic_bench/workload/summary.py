"""Figures that describe a simulated workload (the report, not the physics)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sonic_bench.workload.batching import BatchStats, batch_stats, cut_requests
from sonic_bench.workload.event import simulate_event
from sonic_bench.workload.physics import LABELS

COMPRESSION_SAMPLE = 2000  # patches: enough for a stable ratio, quick to compress


@dataclass(frozen=True)
class WorkloadSummary:
    hits_mean: float
    hits_std: float
    label_fractions: dict[str, float]
    zero_fraction: float
    compression_ratio: float
    random_compression_ratio: float
    batches: dict[int, BatchStats]


def compression_ratio(array: np.ndarray) -> float:
    raw = np.ascontiguousarray(array).tobytes()
    return len(raw) / len(zlib.compress(raw, 6))


def summarize_events(
    seed: int,
    n_events: int,
    event_scale: float,
    settings: Sequence[int],
    on_event: Callable[[int], None] | None = None,
) -> WorkloadSummary:
    hit_counts, labels, zeros, pixels = [], np.zeros(len(LABELS)), 0, 0
    sample: list[np.ndarray] = []
    batches: dict[int, list[BatchStats]] = {s: [] for s in settings}
    for index in range(n_events):
        event = simulate_event(seed, index, event_scale)
        hit_counts.append(len(event.hits))
        labels += np.bincount(event.hits["label"], minlength=len(LABELS))
        groups = list(event.groups())
        for group in groups:
            zeros += int(np.count_nonzero(group.patches == 0))
            pixels += group.patches.size
            if sum(len(s) for s in sample) < COMPRESSION_SAMPLE:
                sample.append(group.patches[:COMPRESSION_SAMPLE])
        for setting in settings:
            batches[setting].append(batch_stats(cut_requests(groups, index, setting)))
        if on_event:
            on_event(index)
    patches = np.concatenate(sample)[:COMPRESSION_SAMPLE]
    uniform = np.random.default_rng(seed).uniform(-5, 15, patches.shape).astype(np.float32)
    return WorkloadSummary(
        hits_mean=float(np.mean(hit_counts)),
        hits_std=float(np.std(hit_counts)),
        label_fractions={name: float(labels[i] / labels.sum()) for i, name in enumerate(LABELS)},
        zero_fraction=zeros / pixels,
        compression_ratio=compression_ratio(patches),
        random_compression_ratio=compression_ratio(uniform),
        batches={s: _merge(stats) for s, stats in batches.items()},
    )


def _merge(stats: list[BatchStats]) -> BatchStats:
    return BatchStats(
        events=sum(s.events for s in stats),
        requests=sum(s.requests for s in stats),
        patches=sum(s.patches for s in stats),
    )
