"""One simulated ProtoDUNE-SP event: its hits, plane images and patches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sonic_bench.workload.detector import N_APA, PLANES
from sonic_bench.workload.patches import cut_patches, plane_image
from sonic_bench.workload.physics import simulate_activity
from sonic_bench.workload.readout import deposits_in_apa, read_out_plane

DEFAULT_SEED = 1234
# Events kept in memory (~62 MB of plane images each, whatever the scale): a sweep's batch
# settings, its models and an accuracy run's passes cut the same event, and simulating it
# again costs seconds.
RECENT_EVENTS = 4


@dataclass(frozen=True)
class PatchGroup:
    """The hits of one (APA, plane) and their patches: what one module call batches."""

    apa: int
    plane: int
    hits: np.ndarray
    patches: np.ndarray  # (n, 48, 48, 1) float32


@dataclass(frozen=True)
class Event:
    index: int
    seed: int
    scale: float
    hits: np.ndarray  # HIT_DTYPE, ordered by (apa, plane, wire, tick)
    images: dict[tuple[int, int], np.ndarray]  # (apa, plane) -> (wires, 1000) network image

    def groups(self) -> Iterator[PatchGroup]:
        """Patches group by group, so a whole event's ~500 MB is never held at once."""
        for (apa, plane), image in self.images.items():
            mask = (self.hits["apa"] == apa) & (self.hits["plane"] == plane)
            hits = self.hits[mask]
            if len(hits):
                yield PatchGroup(apa, plane, hits, cut_patches(image, hits["wire"], hits["tick"]))


def simulate_event(seed: int = DEFAULT_SEED, index: int = 0, scale: float = 1.0) -> Event:
    """Deterministic for (seed, index); `scale` shrinks all activity proportionally. The
    arrays of the event are read-only: the last RECENT_EVENTS events are shared by callers."""
    if scale <= 0:
        raise ValueError(f"event scale must be positive, got {scale}")
    return _simulated(int(seed), int(index), float(scale))


@lru_cache(maxsize=RECENT_EVENTS)
def _simulated(seed: int, index: int, scale: float) -> Event:
    physics_seed, noise_seed = np.random.SeedSequence([seed, index]).spawn(2)
    deposits = simulate_activity(np.random.default_rng(physics_seed), scale)
    noise_rng = np.random.default_rng(noise_seed)
    hits, images = [], {}
    for apa in range(N_APA):
        index_in_apa = deposits_in_apa(deposits, apa)
        for plane in PLANES:
            readout = read_out_plane(deposits, index_in_apa, apa, plane, noise_rng)
            readout.hits["event"] = index
            hits.append(readout.hits)
            images[(apa, plane.index)] = plane_image(readout.waveform)
    event = Event(index, seed, scale, np.concatenate(hits), images)
    for array in (event.hits, *images.values()):
        array.flags.writeable = False
    return event
