"""Requests as EmTrackMichelId sends them: hits grouped per (TPC, plane), cut into batches.

The batch-size setting is the module's parameter; what reaches the server is smaller on
average because each plane's last request holds the remainder. On simulated events the
setting 256 gives ~245 patches per request (the paper's "small batch", 235) and 2300 gives
~1690 (the paper's "large batch", 1693, ~32 requests per event).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from sonic_bench.errors import SonicBenchError
from sonic_bench.workload.event import PatchGroup

SMALL_BATCH_SETTING = 256
LARGE_BATCH_SETTING = 2300
NAMED_SETTINGS = {"small": SMALL_BATCH_SETTING, "large": LARGE_BATCH_SETTING}
# The paper's average request sizes, to which each named setting is calibrated.
PAPER_AVERAGE = {SMALL_BATCH_SETTING: 235, LARGE_BATCH_SETTING: 1693}


@dataclass(frozen=True)
class RequestBatch:
    event: int
    apa: int
    plane: int
    patches: np.ndarray  # (n, 48, 48, 1) float32, contiguous

    @property
    def size(self) -> int:
        return len(self.patches)


def parse_batch_setting(text: str | int) -> int:
    """'small', 'large' or a positive integer."""
    if isinstance(text, int):
        value = text
    elif text in NAMED_SETTINGS:
        return NAMED_SETTINGS[text]
    else:
        try:
            value = int(text)
        except ValueError:
            value = 0
    if value <= 0:
        raise SonicBenchError(
            f"batch size setting {text!r} is not valid: use 'small' ({SMALL_BATCH_SETTING}), "
            f"'large' ({LARGE_BATCH_SETTING}) or a positive integer"
        )
    return value


def cut_requests(groups: Iterable[PatchGroup], event: int, setting: int) -> Iterator[RequestBatch]:
    for group in groups:
        for start in range(0, len(group.patches), setting):
            patches = group.patches[start : start + setting]
            yield RequestBatch(event, group.apa, group.plane, patches)


@dataclass(frozen=True)
class BatchStats:
    events: int
    requests: int
    patches: int

    @property
    def requests_per_event(self) -> float:
        return self.requests / self.events if self.events else 0.0

    @property
    def avg_batch_size(self) -> float:
        return self.patches / self.requests if self.requests else 0.0

    @property
    def patches_per_event(self) -> float:
        return self.patches / self.events if self.events else 0.0


def batch_stats(batches: Iterable[RequestBatch]) -> BatchStats:
    events, requests, patches = set(), 0, 0
    for batch in batches:
        events.add(batch.event)
        requests += 1
        patches += batch.size
    return BatchStats(len(events), requests, patches)
