"""Request inputs for any model: what is sent, from where, in batches of which sizes.

In order of preference (`--input-data`): the ProtoDUNE-SP workload for a model whose one
input is a 48x48x1 FP32 patch (EmTrackMichelId's, the default); perf_analyzer's own input
files (its JSON `data` list with flat lists, `b64`, `content`/`shape`, or a directory of
one raw file per input), so that a user's files work unchanged; seeded `random` or
`zero` data otherwise. As perf_analyzer does, the samples are used in turn and a batch
of B takes B consecutive samples, wrapping around.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonic_bench.errors import SonicBenchError
from sonic_bench.model.emtrackmichel import PATCH_SHAPE
from sonic_bench.model.signature import NUMPY_TYPES, Batch, ModelSignature, TensorSpec

PROTODUNE = "protodune"
RANDOM = "random"
ZERO = "zero"
RANDOM_STRING_BYTES = 16  # BYTES elements of random data (perf_analyzer: --string-length)
SAMPLES = 256  # distinct random samples made per input; batches reuse them in turn


@dataclass(frozen=True)
class InputData:
    """Where the inputs come from: `protodune`, `random`, `zero`, or a perf_analyzer file
    or folder (`path`)."""

    source: str
    path: Path | None = None

    @classmethod
    def parse(cls, text: str | None) -> InputData | None:
        """`--input-data` as given; None when not given (the model decides)."""
        if text is None or not text.strip():
            return None
        value = text.strip()
        if value.lower() in (PROTODUNE, RANDOM, ZERO):
            return cls(value.lower())
        path = Path(value)
        if not path.exists():
            raise SonicBenchError(
                f"--input-data {value}: no such file or folder; give protodune, random, "
                "zero, a perf_analyzer JSON file or a folder of one file per input"
            )
        return cls("directory" if path.is_dir() else "file", path)

    def describe(self) -> str:
        return str(self.path) if self.path else self.source


def takes_patches(signature: ModelSignature) -> bool:
    """A model whose one input is a ProtoDUNE-SP hit patch: the realistic workload fits."""
    (spec, *more) = signature.inputs or (None,)
    return not more and spec is not None and spec.datatype == "FP32" and spec.dims == PATCH_SHAPE


def choose_input_data(signature: ModelSignature, given: InputData | None) -> InputData:
    if given is None:
        return InputData(PROTODUNE if takes_patches(signature) else RANDOM)
    if given.source == PROTODUNE and not takes_patches(signature):
        inputs = ", ".join(s.describe() for s in signature.inputs)
        raise SonicBenchError(
            f"--input-data protodune needs one FP32 [48, 48, 1] input; this model has "
            f"{inputs}: use random, zero or a perf_analyzer input file"
        )
    return given


@dataclass(frozen=True)
class BatchSizes:
    """`--batch` for a model fed other than by the ProtoDUNE-SP workload: every request
    N samples (`N`), or sizes drawn uniformly from LOW..HIGH (seeded)."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> BatchSizes:
        low, sep, high = text.strip().partition("..")
        try:
            sizes = cls(int(low), int(high) if sep else int(low))
        except ValueError:
            sizes = cls(0, 0)
        if sizes.low < 1 or sizes.high < sizes.low:
            raise SonicBenchError(
                f"--batch {text!r}: give a batch size N or a range LOW..HIGH (1 <= LOW <= "
                "HIGH); small and large are the ProtoDUNE-SP workload's settings"
            )
        return sizes

    @property
    def label(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}..{self.high}"

    def draw(self, n: int, seed: int) -> list[int]:
        if self.low == self.high:
            return [self.low] * n
        return [int(s) for s in np.random.default_rng(seed).integers(self.low, self.high + 1, n)]


def make_batches(
    signature: ModelSignature, data: InputData, sizes: Sequence[int], seed: int
) -> list[Batch]:
    """Batches of the given sizes from `data` (not the ProtoDUNE-SP workload's)."""
    samples = _samples(signature, data, seed)
    count = len(samples[0]) if samples else 1
    batches, start = [], 0
    for size in sizes:
        rows = (start + np.arange(size)) % count
        tensors = tuple(_batch_of(signature, column, rows) for column in samples)
        batches.append(Batch(tensors, size))
        start += size
    return batches


def _batch_of(signature: ModelSignature, column: np.ndarray, rows):
    picked = column[rows]
    return picked if signature.batching else picked[0]


def _samples(signature: ModelSignature, data: InputData, seed: int) -> list[np.ndarray]:
    """Per input, its samples stacked: [samples, *dims]."""
    if data.source in (RANDOM, ZERO):
        rng = np.random.default_rng(seed)
        return [_generated(spec, data.source == ZERO, rng) for spec in signature.inputs]
    if data.source == "directory":
        return [_from_folder(spec, data.path) for spec in signature.inputs]
    return _from_json(signature, data.path)


def _generated(spec: TensorSpec, zero: bool, rng: np.random.Generator) -> np.ndarray:
    shape = (SAMPLES, *spec.dims)
    kind = NUMPY_TYPES[spec.datatype]
    if spec.datatype == "BYTES":
        fill = b"0" * RANDOM_STRING_BYTES if zero else None
        values = [
            fill or bytes(rng.integers(97, 123, RANDOM_STRING_BYTES, dtype=np.uint8))
            for _ in range(math.prod(shape))
        ]
        return np.array(values, dtype=object).reshape(shape)
    if zero:
        return np.zeros(shape, kind)
    if spec.datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(kind, np.integer):
        info = np.iinfo(kind)  # small values: an index or a count must stay meaningful
        return rng.integers(max(info.min, 0), min(info.max, 100) + 1, shape).astype(kind)
    return rng.random(shape).astype(kind)


def _from_folder(spec: TensorSpec, folder: Path) -> np.ndarray:
    """perf_analyzer's folder: a file named after each input, its raw batch-1 contents."""
    path = folder / spec.name
    if not path.is_file():
        raise SonicBenchError(f"--input-data {folder}: no file {spec.name!r} for that input")
    return _decode(spec, path.read_bytes(), spec.dims, f"{path}")[None]


def _from_json(signature: ModelSignature, path: Path) -> list[np.ndarray]:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SonicBenchError(f"--input-data {path}: not a JSON file ({e})") from None
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SonicBenchError(
            f'--input-data {path}: no "data" list of entries (perf_analyzer\'s format)'
        )
    if isinstance(entries[0], list):
        raise SonicBenchError(
            f"--input-data {path}: several data streams (sequence models) are not supported: "
            'give one "data" list'
        )
    columns = []
    for spec in signature.inputs:
        values = []
        for i, entry in enumerate(entries):
            where = f"{path}: data[{i}]"
            if not isinstance(entry, dict) or spec.name not in entry:
                raise SonicBenchError(f"{where} has no value for the input {spec.name!r}")
            values.append(_entry_value(spec, entry[spec.name], where))
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise SonicBenchError(
                f"{path}: the entries give {spec.name} in several shapes {sorted(shapes)}; "
                "sonic-bench sends one shape per input"
            )
        columns.append(np.stack(values))
    return columns


def _entry_value(spec: TensorSpec, value, where: str) -> np.ndarray:
    """One sample of one input: a flat list, {"b64": ...}, or {"content": ..., "shape": ...}."""
    dims = spec.dims
    if isinstance(value, dict) and "content" in value:
        if "shape" in value:
            dims = tuple(int(d) for d in value["shape"])
        value = value["content"]
    if any(d < 0 for d in dims):
        raise SonicBenchError(
            f'{where}: {spec.describe()} has variable dimensions: give its "shape" in the '
            f"file or --shape {spec.name}:D1,D2"
        )
    if isinstance(value, dict) and "b64" in value:
        return _decode(spec, base64.b64decode(value["b64"]), dims, where)
    if not isinstance(value, list):
        raise SonicBenchError(f'{where}: {spec.name} is neither a list nor {{"b64": ...}}')
    if spec.datatype == "BYTES":
        array = np.array([str(v).encode() for v in value], dtype=object)
    else:
        try:
            array = np.array(value, dtype=NUMPY_TYPES[spec.datatype])
        except (TypeError, ValueError):
            raise SonicBenchError(
                f"{where}: {spec.name} holds values that are not {spec.datatype}"
            ) from None
    return _reshaped(spec, array.ravel(), dims, where)


def _decode(spec: TensorSpec, raw: bytes, dims: tuple[int, ...], where: str) -> np.ndarray:
    if spec.datatype == "BYTES":
        items, offset = [], 0
        while offset + 4 <= len(raw):
            length = int.from_bytes(raw[offset : offset + 4], "little")
            items.append(raw[offset + 4 : offset + 4 + length])
            offset += 4 + length
        if offset != len(raw):
            raise SonicBenchError(f"{where}: {spec.name} is not BYTES (4-byte length, bytes)...")
        return _reshaped(spec, np.array(items, dtype=object), dims, where)
    if spec.datatype == "BF16":
        halves = np.frombuffer(raw, "<u2")
        flat = (halves.astype(np.uint32) << 16).view(np.float32)
    else:
        little = np.dtype(NUMPY_TYPES[spec.datatype]).newbyteorder("<")
        if len(raw) % little.itemsize:
            raise SonicBenchError(
                f"{where}: {len(raw)} bytes is not a whole number of {spec.datatype}"
            )
        flat = np.frombuffer(raw, little).astype(NUMPY_TYPES[spec.datatype])
    return _reshaped(spec, flat, dims, where)


def _reshaped(spec: TensorSpec, flat: np.ndarray, dims: tuple[int, ...], where: str) -> np.ndarray:
    if flat.size != math.prod(dims):
        raise SonicBenchError(
            f"{where}: {spec.name} has {flat.size} values; its shape [{', '.join(map(str, dims))}] "
            f"holds {math.prod(dims)} (one sample, without the batch dimension)"
        )
    return flat.reshape(dims)


def with_data_shapes(signature: ModelSignature, batches: Sequence[Batch]) -> ModelSignature:
    """The signature with every variable input's dims as the data gives them (a file's
    "shape" fields), so that what is sent can be checked like any fixed shape."""
    if not batches:
        return signature
    first = batches[0].tensors
    lead = 1 if signature.batching else 0
    shapes = {
        spec.name: tuple(first[i].shape[lead:])
        for i, spec in enumerate(signature.inputs)
        if spec.variable
    }
    return signature.with_shapes(shapes) if shapes else signature
