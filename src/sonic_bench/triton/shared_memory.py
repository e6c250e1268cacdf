"""System shared memory with a local server: inputs written once, outputs per worker.

perf_analyzer's `--shared-memory system` copies its input data into regions once, and
each request only names a region and an offset; so does sonic-bench (its requests,
built once per worker, go through the raw transports of `grpc_raw` and `http_raw`):
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

FLOAT_BYTES = 4


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
    """Every batch in one region, at known offsets."""

    def __init__(self, client, arrays: Sequence[np.ndarray]):
        self.prefix = f"sonic-shm-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        self._guard = LeftoversGuard(Leftovers(shm_prefixes=(self.prefix,)))
        contiguous = [np.ascontiguousarray(a, np.float32) for a in arrays]
        offsets = np.concatenate([[0], np.cumsum([a.nbytes for a in contiguous])])
        try:
            self._region = _Region(client, self.prefix + "inputs", int(offsets[-1]))
            for array, offset in zip(contiguous, offsets, strict=False):
                shm.set_shared_memory_region(self._region.handle, [array], offset=int(offset))
        except BaseException:
            self._guard.close()
            raise
        self.placements = [
            Placement(self._region.name, int(offset), a.nbytes)
            for a, offset in zip(contiguous, offsets, strict=False)
        ]

    def close(self) -> None:
        try:
            self._region.close()
        finally:
            self._guard.close()


class WorkerOutputs:
    """One worker's output region: both heads' answers for its largest batch."""

    def __init__(self, client, prefix: str, outputs: Sequence[tuple[str, int]], max_batch: int):
        self.outputs = tuple(outputs)  # (name, values per patch)
        width = sum(n for _, n in self.outputs)
        name = f"{prefix}out-{uuid.uuid4().hex[:8]}"
        self._region = _Region(client, name, max_batch * width * FLOAT_BYTES)
        self._views: dict[int, np.ndarray] = {}

    def placements(self, batch: int) -> list[tuple[str, Placement]]:
        """Each output's place for a batch of `batch` patches, one after the other."""
        placed, offset = [], 0
        for name, width in self.outputs:
            size = batch * width * FLOAT_BYTES
            placed.append((name, Placement(self._region.name, offset, size)))
            offset += size
        return placed

    def first_output(self, batch: int) -> np.ndarray:
        """The first head's answers, read in place, as a client reads its results (one
        view per batch size, made once: making it cost more than reading it)."""
        view = self._views.get(batch)
        if view is None:
            width = self.outputs[0][1]
            view = shm.get_contents_as_numpy(self._region.handle, np.float32, [batch, width])
            self._views[batch] = view
        return view

    def close(self) -> None:
        self._views.clear()  # the region cannot be unmapped while a view points into it
        self._region.close()
