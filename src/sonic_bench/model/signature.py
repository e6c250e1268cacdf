"""A served model's tensors, as the server describes them: names, datatypes, shapes.

perf_analyzer can load any model because it reads the model's metadata (KServe v2) and
configuration from the server; so does sonic-bench (`triton.client.read_signature`). This
module is the pure part: the signature as data, parsed from those two answers, made
concrete by `--shape`, checked for what the engine can send, and the tensors' bytes as
Triton's protocol defines them (little-endian, row-major; BYTES as 4-byte lengths and
bytes; BF16 as the upper half of an FP32).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from sonic_bench.errors import SonicBenchError

# Datatypes Triton's protocol defines, and how numpy holds a tensor of each. BF16 has no
# numpy type: its values are held as float32 and sent as their upper 16 bits.
NUMPY_TYPES: dict[str, type] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.float32,
    "BYTES": np.object_,
}
ITEM_BYTES = {name: np.dtype(t).itemsize for name, t in NUMPY_TYPES.items() if name != "BYTES"}
ITEM_BYTES["BF16"] = 2


@dataclass(frozen=True)
class TensorSpec:
    """One input or output; `dims` per sample (without the batch dimension when the model
    batches), -1 where the size varies."""

    name: str
    datatype: str
    dims: tuple[int, ...]

    @property
    def variable(self) -> bool:
        return any(d < 0 for d in self.dims)

    @property
    def item_bytes(self) -> int | None:
        """Bytes per element; None for BYTES, whose elements each carry their length."""
        return ITEM_BYTES.get(self.datatype)

    @property
    def sample_bytes(self) -> int | None:
        """Bytes of one sample; None when that is not fixed (BYTES, variable dims)."""
        if self.item_bytes is None or self.variable:
            return None
        return self.item_bytes * math.prod(self.dims)

    def describe(self) -> str:
        return f"{self.name} {self.datatype} [{', '.join(map(str, self.dims))}]"


@dataclass(frozen=True)
class ModelSignature:
    """What a request to the model carries and what its answer holds."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int  # 0: the model does not batch; requests carry one sample, no N
    dynamic_batching: bool = False
    platform: str = ""

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    def shape(self, spec: TensorSpec, batch: int) -> tuple[int, ...]:
        """A tensor's shape in a request of `batch` samples."""
        return (batch, *spec.dims) if self.batching else spec.dims

    def with_shapes(self, shapes: Mapping[str, Sequence[int]]) -> ModelSignature:
        """The signature with `--shape NAME:D1,D2` given to inputs; one clear error for a
        name the model has not, a shape that does not fit, or a variable input left."""
        names = {spec.name for spec in self.inputs}
        for name in shapes:
            if name not in names:
                raise SonicBenchError(
                    f"--shape {name}: the model has no input {name!r} "
                    f"(inputs: {', '.join(sorted(names))})"
                )
        inputs = tuple(_shaped(spec, shapes.get(spec.name)) for spec in self.inputs)
        return replace(self, inputs=inputs)

    def check_sendable(self, batch: int, shared_memory: bool = False) -> None:
        """One error line, naming the tensor and why, for what the engine cannot send."""
        for spec in self.inputs:
            if spec.datatype not in NUMPY_TYPES:
                raise SonicBenchError(
                    f"input {spec.describe()}: datatype {spec.datatype} is not one of "
                    f"Triton's ({', '.join(NUMPY_TYPES)}); sonic-bench cannot send it"
                )
            if spec.variable:
                dims = ",".join("D" if d < 0 else str(d) for d in spec.dims)
                raise SonicBenchError(
                    f"input {spec.describe()} has variable dimensions: give its shape "
                    f"with --shape {spec.name}:{dims}"
                )
        if self.batching and batch > self.max_batch_size:
            raise SonicBenchError(
                f"batch {batch} is over the model's max_batch_size {self.max_batch_size}: "
                "send smaller batches (--batch)"
            )
        if not self.batching and batch != 1:
            raise SonicBenchError(
                f"the model does not batch (max_batch_size 0): every request is one "
                f"sample; drop --batch {batch} or give --batch 1"
            )
        if shared_memory:
            self.check_shared_memory()

    def check_shared_memory(self) -> None:
        """Every output's size must be known before the answer, to place it in a region."""
        for spec in self.outputs:
            if spec.sample_bytes is None:
                raise SonicBenchError(
                    f"output {spec.describe()}: its size is not known before the answer, "
                    "so it cannot be placed in shared memory: drop --shared-memory"
                )


def _shaped(spec: TensorSpec, given: Sequence[int] | None) -> TensorSpec:
    if given is None:
        return spec
    dims = tuple(int(d) for d in given)
    fits = len(dims) == len(spec.dims) and all(
        g > 0 and (d < 0 or d == g) for g, d in zip(dims, spec.dims, strict=True)
    )
    if not fits:
        raise SonicBenchError(
            f"--shape {spec.name}:{','.join(map(str, dims))} does not fit the input "
            f"{spec.describe()}: give its dimensions without the batch one, each positive"
        )
    return replace(spec, dims=dims)


def parse_shapes(pairs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """perf_analyzer's `--shape NAME:D1,D2,...` (the name may hold ':', the dims not)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for pair in pairs:
        name, sep, dims = pair.rpartition(":")
        try:
            values = tuple(int(d) for d in dims.split(","))
        except ValueError:
            values = ()
        if not sep or not name or not values or any(v < 1 for v in values):
            raise SonicBenchError(
                f"--shape {pair!r}: give NAME:D1,D2,... with positive sizes, e.g. "
                "--shape pf_points:64,2"
            )
        shapes[name] = values
    return shapes


def signature_of(metadata: Mapping, config: Mapping) -> ModelSignature:
    """The signature from the server's model metadata and model configuration, as JSON
    (HTTP gives it so; gRPC's messages as JSON spell int64 shapes as strings)."""
    max_batch = int(config.get("max_batch_size", 0) or 0)

    def tensors(entries) -> tuple[TensorSpec, ...]:
        specs = []
        for entry in entries or ():
            dims = tuple(int(d) for d in entry.get("shape", ()))
            if max_batch > 0 and dims:
                dims = dims[1:]  # the metadata's shape leads with the batch dimension, -1
            specs.append(TensorSpec(entry["name"], entry["datatype"], dims))
        return tuple(specs)

    return ModelSignature(
        inputs=tensors(metadata.get("inputs")),
        outputs=tensors(metadata.get("outputs")),
        max_batch_size=max_batch,
        dynamic_batching="dynamic_batching" in config,
        platform=str(metadata.get("platform") or config.get("backend") or ""),
    )


@dataclass(frozen=True)
class Batch:
    """One request's inputs, in the signature's input order: each [size, *dims] (or dims
    alone for a model that does not batch)."""

    tensors: tuple[np.ndarray, ...]
    size: int


class WireInput(NamedTuple):
    """One input of one request as it goes on the wire."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes


def wire_inputs(signature: ModelSignature, tensors: Sequence[np.ndarray]) -> tuple[WireInput, ...]:
    """A request's inputs (in the signature's order) encoded once."""
    return tuple(
        WireInput(
            spec.name,
            spec.datatype,
            tuple(int(d) for d in array.shape),
            tensor_bytes(array, spec.datatype),
        )
        for spec, array in zip(signature.inputs, tensors, strict=True)
    )


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """A tensor's contents as Triton's binary protocol carries them."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    if datatype == "BF16":
        return bf16_bytes(array)
    little_endian = np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")
    return np.ascontiguousarray(array, little_endian).tobytes()


def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES: every element, row-major, as a 4-byte little-endian length and its bytes."""
    parts = []
    for item in np.asarray(array, dtype=object).ravel():
        data = item if isinstance(item, bytes) else str(item).encode()
        parts += (len(data).to_bytes(4, "little"), data)
    return b"".join(parts)


def bf16_bytes(values: np.ndarray) -> bytes:
    """BF16: each value's FP32 rounded to nearest even in its upper 16 bits."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def tensor_from_bytes(data: bytes, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """A tensor read back from Triton's binary protocol (the inverse of `tensor_bytes`):
    BF16 widened to float32, BYTES as an object array of bytes."""
    shape = tuple(int(d) for d in shape)
    if datatype == "BYTES":
        items, at = [], 0
        while at < len(data):
            size = int.from_bytes(data[at : at + 4], "little")
            items.append(bytes(data[at + 4 : at + 4 + size]))
            at += 4 + size
        return np.array(items, dtype=object).reshape(shape)
    if datatype == "BF16":
        bits = np.frombuffer(data, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    kind = np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")
    return np.frombuffer(data, kind).reshape(shape).astype(NUMPY_TYPES[datatype])
