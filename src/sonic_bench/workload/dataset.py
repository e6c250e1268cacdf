"""Workload files: simulated events stored once, replayed by every load test.

Format (a zip archive, `.sbwl`): `header.json` holds the format name and version, the
generator parameters (seed, event scale, events) and the label names; per event,
`events/NNNNNN/hits.npy` is the hit table (event, apa, plane, wire, tick, label, peak_adc,
integral_adc) and `events/NNNNNN/apaA_planeP.npy` the float32 patches (n, 48, 48, 1) of
that (TPC, plane) in hit order. Members are deflated: real patches are sparse and compress
well. Reading streams one (TPC, plane) group at a time, and the batch-size setting is
chosen at read time, so one file serves every setting.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sonic_bench.errors import SonicBenchError
from sonic_bench.workload.batching import RequestBatch, cut_requests
from sonic_bench.workload.event import Event, PatchGroup, simulate_event
from sonic_bench.workload.physics import LABELS
from sonic_bench.workload.readout import HIT_DTYPE

FORMAT = "sonic-bench-workload"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetHeader:
    seed: int
    event_scale: float
    n_events: int
    labels: tuple[str, ...] = LABELS
    format: str = FORMAT
    format_version: int = FORMAT_VERSION


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_dataset(
    path: Path,
    seed: int,
    n_events: int,
    event_scale: float,
    on_event: Callable[[Event], None] | None = None,
) -> DatasetHeader:
    if n_events < 1 or not 0 < event_scale <= 1:
        raise SonicBenchError("give at least one event and an event scale in (0, 1]")
    header = DatasetHeader(seed=seed, event_scale=event_scale, n_events=n_events)
    tmp = path.with_name(path.name + ".part")
    try:
        zf = zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
    except OSError as e:
        raise SonicBenchError(
            f"cannot write {path} ({e.strerror}): choose a folder that exists and is writable"
        ) from None
    with zf:
        zf.writestr("header.json", json.dumps(asdict(header), indent=2))
        for index in range(n_events):
            event = simulate_event(seed, index, event_scale)
            prefix = f"events/{index:06d}/"
            zf.writestr(prefix + "hits.npy", _npy_bytes(event.hits))
            for group in event.groups():
                zf.writestr(
                    f"{prefix}apa{group.apa}_plane{group.plane}.npy", _npy_bytes(group.patches)
                )
            if on_event:
                on_event(event)
    tmp.replace(path)  # a crash never leaves a half-written file under the real name
    return header


class Dataset:
    """A workload file opened for streaming."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
            self.header = DatasetHeader(**_fix_tuples(json.loads(self._zip.read("header.json"))))
        except FileNotFoundError:
            raise SonicBenchError(
                f"workload file {path} not found: create it with 'sonic-bench workload generate'"
            ) from None
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, TypeError, OSError) as e:
            raise _corrupt(path, e) from None
        if self.header.format != FORMAT or self.header.format_version != FORMAT_VERSION:
            raise _corrupt(path, f"format {self.header.format} v{self.header.format_version}")

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self, member: str) -> np.ndarray:
        try:
            with self._zip.open(member) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as e:
            raise _corrupt(self.path, f"{member}: {e}") from None

    def hits(self, event: int) -> np.ndarray:
        hits = self._load(f"events/{event:06d}/hits.npy")
        if hits.dtype != HIT_DTYPE:
            raise _corrupt(self.path, f"event {event} hit table has dtype {hits.dtype}")
        return hits

    def groups(self, event: int) -> Iterator[PatchGroup]:
        hits = self.hits(event)
        keys = sorted({(int(a), int(p)) for a, p in zip(hits["apa"], hits["plane"], strict=True)})
        for apa, plane in keys:
            group_hits = hits[(hits["apa"] == apa) & (hits["plane"] == plane)]
            patches = self._load(f"events/{event:06d}/apa{apa}_plane{plane}.npy")
            if len(patches) != len(group_hits) or patches.shape[1:] != (48, 48, 1):
                raise _corrupt(self.path, f"event {event} apa {apa} plane {plane} patches")
            yield PatchGroup(apa, plane, group_hits, patches)

    def requests(self, setting: int, events: range | None = None) -> Iterator[RequestBatch]:
        for event in events or range(self.header.n_events):
            yield from cut_requests(self.groups(event), event, setting)


def _fix_tuples(data: dict) -> dict:
    if "labels" in data:
        data["labels"] = tuple(data["labels"])
    return data


def _corrupt(path: Path, reason: object) -> SonicBenchError:
    return SonicBenchError(
        f"workload file {path} is corrupt or truncated ({reason}): "
        "regenerate it with 'sonic-bench workload generate'"
    )
