"""What a run sends to a model: its batches, from the model's signature and the options.

The one place where the served model's tensors (read from the server), `--input-data`,
`--batch` and `--shape` meet, for the sweep and the Locust jobs alike: the ProtoDUNE-SP
workload for a model that takes a hit patch, other data for any other model, and the
record of what was sent for the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sonic_bench.errors import SonicBenchError
from sonic_bench.model.signature import Batch, ModelSignature
from sonic_bench.workload.batching import NAMED_SETTINGS, parse_batch_setting
from sonic_bench.workload.inputs import (
    PROTODUNE,
    BatchSizes,
    InputData,
    choose_input_data,
    make_batches,
    with_data_shapes,
)
from sonic_bench.workload.pool import BatchPool

DEFAULT_PROTODUNE_BATCH = "large"
DEFAULT_BATCH = "1"  # perf_analyzer's -b for any other model


@dataclass(frozen=True)
class InputOptions:
    """`--batch`, `--input-data`, `--shape` and the seed: how requests are filled."""

    batch: str | None = None  # None: large for ProtoDUNE-SP, 1 otherwise
    input_data: InputData | None = None  # None: ProtoDUNE-SP when the model takes patches
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = 0


def check_batch_text(text: str) -> str:
    """A `--batch` value, before any server is asked which model it is: a ProtoDUNE-SP
    setting (small, large, N) or a size or range for any model (N, LOW..HIGH)."""
    if text.strip() not in NAMED_SETTINGS:
        BatchSizes.parse(text)
    return text.strip()


@dataclass(frozen=True)
class RequestSet:
    """The batches a run replays, and what they are."""

    signature: ModelSignature  # with every shape known
    batches: tuple[Batch, ...]
    input_data: InputData
    seed: int
    setting: int | None = None  # the ProtoDUNE-SP batch-size setting
    sizes: BatchSizes | None = None  # for any other data
    pool: BatchPool | None = None  # the ProtoDUNE-SP events the batches come from

    @property
    def protodune(self) -> bool:
        return self.input_data.source == PROTODUNE

    @property
    def tag(self) -> str:
        if self.setting is not None:
            return f"b{self.setting}"
        low, high = self.sizes.low, self.sizes.high
        return f"b{low}" if low == high else f"b{low}-{high}"  # a folder name: no '..'

    @property
    def average(self) -> float:
        return float(np.mean([b.size for b in self.batches]))

    @property
    def batch_setting(self) -> int:
        """The manifest's batch_size_setting: ProtoDUNE-SP's, or the largest size sent."""
        return self.setting if self.setting is not None else self.sizes.high

    def uniform(self, keep: int | None = None) -> RequestSet:
        """As many batches (or `keep`), each of the average size: perf_analyzer's `-b`."""
        size = round(self.average)
        batches = uniform_batches(self.batches, size)[:keep]
        return replace(self, batches=tuple(batches))

    def record(self) -> dict:
        """What was sent, for the manifest: source, seed, shapes and batch sizes."""
        sizes = [b.size for b in self.batches]
        return {
            "source": self.input_data.describe(),
            "seed": self.seed,
            "shapes": {s.name: list(s.dims) for s in self.signature.inputs},
            "datatypes": {s.name: s.datatype for s in self.signature.inputs},
            "batch": f"setting {self.setting}" if self.setting is not None else self.sizes.label,
            "batch_sizes": {"min": min(sizes), "max": max(sizes), "mean": self.average},
        }


def uniform_batches(batches: Sequence[Batch], size: int) -> list[Batch]:
    """As many batches, each of exactly `size` samples taken in turn from `batches`'
    samples, wrapping around: what perf_analyzer's `-b` sends from its input data, which
    cannot vary the batch size from request to request."""
    columns = [
        np.concatenate(list(column)) for column in zip(*(b.tensors for b in batches), strict=True)
    ]
    total = len(columns[0])
    starts = np.arange(len(batches))[:, None] * size
    rows = (starts + np.arange(size)) % total
    return [Batch(tuple(c[r] for c in columns), size) for r in rows]


def plan_requests(
    signature: ModelSignature,
    options: InputOptions,
    count: int,
    pool_for: Callable[[int], BatchPool],
) -> RequestSet:
    """`count` batches for the model; `pool_for(setting)` builds (or recalls) the
    ProtoDUNE-SP events of a setting."""
    signature = signature.with_shapes(options.shapes)
    data = choose_input_data(signature, options.input_data)
    if data.source == PROTODUNE:
        setting = parse_batch_setting(options.batch or DEFAULT_PROTODUNE_BATCH)
        pool = pool_for(setting)
        batches = tuple(Batch((b.patches,), b.size) for b in pool.sample(count))
        requests = RequestSet(signature, batches, data, pool.seed, setting=setting, pool=pool)
    else:
        text = options.batch or DEFAULT_BATCH
        if text in NAMED_SETTINGS:
            raise SonicBenchError(
                f"--batch {text} is a ProtoDUNE-SP setting, and this model is fed "
                f"{data.describe()} data: give a batch size (--batch 32 or 8..64)"
            )
        sizes = BatchSizes.parse(text)
        if data.source in ("random", "zero"):
            signature.check_sendable(sizes.high)  # variable inputs need --shape first
        made = make_batches(signature, data, sizes.draw(count, options.seed), options.seed)
        signature = with_data_shapes(signature, made)
        requests = RequestSet(signature, tuple(made), data, options.seed, sizes=sizes)
    return requests
