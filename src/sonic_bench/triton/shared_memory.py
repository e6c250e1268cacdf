"""System shared memory with a local server: inputs written once, outputs per worker.

perf_analyzer's `--shared-memory system` copies its input data into regions once, and
each request only names a region and an offset; so does sonic-bench (its requests,
built once per worker, go through the raw transports of `engine.grpc_call` and `engine.http1`):
one region holds every batch the sweep replays, registered with the server once and
shared read-only by all workers, and each worker has an output region of its own
(answers must not overwrite each other). Rewriting 15 MB of patches before every request
measured the client's memcpy, not the server.

Every region's name starts with the prefix of its `SharedInputs`, and a reaper removes
what is left of them should the harness be killed before it could.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.utils.shared_memory as shm

from sonic_bench.process import Leftovers, LeftoversGuard


class _Region:
    """One system shared-memory region, created here and registered with the server."""

    def __init__(self, client, name: str, byte_size: int):
        self.client, self.name, self.byte_size = client, name, byte_size
        self.handle = shm.create_shared_memory_region(name, "/" + name, byte_size)
        try:
            client.register_system_shared_memory(name, "/" + name, byte_size)
        except BaseException:
            shm.destroy_shared_memory_region(self.handle)
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may be gone; free the region anyway
            self.client.unregister_system_shared_memory(self.name)
        shm.destroy_shared_memory_region(self.handle)


@dataclass(frozen=True)
class Placement:
    """Where a tensor lies: region, offset and size in bytes (Triton's request parameters
    shared_memory_region, shared_memory_offset, shared_memory_byte_size)."""

    region: str
    offset: int
    byte_size: int


class SharedInputs:
    """Every batch's inputs in one region, one after the other, at known offsets."""

    def __init__(self, client, batches: Sequence[Sequence[bytes]]):
        self.prefix = f"sonic-shm-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        self._guard = LeftoversGuard(Leftovers(shm_prefixes=(self.prefix,)))
        sizes = [len(data) for tensors in batches for data in tensors]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        try:
            self._region = _Region(client, self.prefix + "inputs", max(int(offsets[-1]), 1))
            flat = [data for tensors in batches for data in tensors]
            for data, offset in zip(flat, offsets, strict=False):
                if data:
                    array = np.frombuffer(data, np.uint8)
                    shm.set_shared_memory_region(self._region.handle, [array], offset=int(offset))
        except BaseException:
            self._guard.close()
            raise
        placed = iter(
            Placement(self._region.name, int(offset), size)
            for offset, size in zip(offsets, sizes, strict=False)
        )
        self.placements = [[next(placed) for _ in tensors] for tensors in batches]

    def close(self) -> None:
        try:
            self._region.close()
        finally:
            self._guard.close()


class WorkerOutputs:
    """One worker's output region: every output's answers for its largest batch."""

    def __init__(
        self, client, prefix: str, outputs: Sequence[tuple[str, int, type]], max_batch: int
    ):
        self.outputs = tuple(outputs)  # (name, bytes per sample, numpy type)
        width = sum(n for _, n, _ in self.outputs)
        name = f"{prefix}out-{uuid.uuid4().hex[:8]}"
        self._region = _Region(client, name, max(max_batch * width, 1))
        self._views: dict[int, np.ndarray] = {}

    def placements(self, batch: int) -> list[tuple[str, Placement]]:
        """Each output's place for a batch of `batch` samples, one after the other."""
        placed, offset = [], 0
        for name, width, _ in self.outputs:
            size = batch * width
            placed.append((name, Placement(self._region.name, offset, size)))
            offset += size
        return placed

    def first_output(self, batch: int) -> np.ndarray:
        """The first output's answers, read in place, as a client reads its results (one
        view per batch size, made once: making it cost more than reading it)."""
        view = self._views.get(batch)
        if view is None:
            _, width, kind = self.outputs[0]
            count = batch * width // np.dtype(kind).itemsize
            view = shm.get_contents_as_numpy(self._region.handle, kind, [count])
            self._views[batch] = view
        return view

    def read_outputs(self, batch: int, shapes: Sequence[tuple[int, ...]]) -> dict[str, np.ndarray]:
        """Every output's answers for a batch, copied out of the region (the accuracy
        mode keeps them; the next answer overwrites the region). BF16 stays raw bits."""
        read, offset = {}, 0
        for (name, width, kind), shape in zip(self.outputs, shapes, strict=True):
            view = shm.get_contents_as_numpy(self._region.handle, kind, list(shape), offset)
            read[name] = np.array(view)
            offset += batch * width
        return read

    def close(self) -> None:
        self._views.clear()  # the region cannot be unmapped while a view points into it
        self._region.close()
