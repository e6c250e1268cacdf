"""Writing a run folder as the run goes, and reading it back.

The manifest is rewritten atomically on every change and each load level is appended to
steps.csv as soon as it ends, so a crash or Ctrl-C loses at most the level in flight and
leaves `status: partial`.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import gzip
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sonic_bench.errors import SonicBenchError
from sonic_bench.results.schema import (
    EVENT_COLUMNS,
    READABLE_SCHEMA_VERSIONS,
    REPLICA_COLUMNS,
    REQUEST_COLUMNS,
    STEP_COLUMNS,
    Manifest,
    RunStatus,
)

MANIFEST = "manifest.json"
STEPS = "steps.csv"
REQUESTS = "requests.csv.gz"
EVENTS = "events.csv"
REPLICAS = "replicas.csv"
ACCURACY = "accuracy.json"  # an accuracy run's comparison (accuracy/drift.AccuracySummary)

# How each requests.csv.gz column is written: times to the microsecond, latency to the
# microsecond in ms; errors on one line without the separator.
_REQUEST_FORMAT = {
    "t_send": "{:.6f}".format,
    "t_recv": "{:.6f}".format,
    "latency_ms": "{:.3f}".format,
    "ok": lambda ok: str(int(ok)),
    "error": lambda e: (e or "").replace(",", ";").replace("\n", " "),
}


class ResultsUnwritable(SonicBenchError):
    """The results folder took no more (disk full, read-only, removed): what was
    written before stays as it is."""


def _unwritable(path: Path, error: OSError) -> ResultsUnwritable:
    reason = error.strerror or type(error).__name__
    code = errno.errorcode.get(error.errno or 0, "")
    return ResultsUnwritable(
        f"cannot write {path}: {reason}{f' ({code})' if code else ''}: what was written "
        "before is kept; free space or give a writable --results"
    )


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Any OSError while writing `path` (a run's file) as one clear error."""
    try:
        yield
    except OSError as e:
        raise _unwritable(path, e) from None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()  # no half-written temp manifest left beside the good one
        raise _unwritable(path, e) from None


def _write_json_in_place(path: Path, data: dict[str, Any]) -> None:
    """The last resort on a full disk: the manifest rewritten compact over its own
    blocks, only when the compact text is no longer than the file (so no new block is
    needed, and a failed write cannot leave less than was there)."""
    text = (json.dumps(data, separators=(",", ":")) + "\n").encode()
    if len(text) > path.stat().st_size:
        raise OSError(errno.ENOSPC, "no room to record the status")
    with open(path, "r+b") as f:
        f.write(text)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def check_writable(root: Path) -> None:
    """Fail at once, in one line, when run folders cannot be written under `root`
    (read-only, a file in the way, no space), before a server is started for nothing."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".sonic-probe-"):
            pass
    except OSError as e:
        raise _unwritable(root, e) from None


class RunWriter:
    """One run folder under `root`; use as a context manager to always leave a status."""

    def __init__(self, root: Path, manifest: Manifest):
        self.manifest = manifest
        self.folder = root / manifest.run_id
        try:
            self.folder.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise SonicBenchError(
                f"run folder {self.folder} already exists: choose another --label"
            ) from None
        except OSError as e:
            raise _unwritable(self.folder, e) from None
        self.steps_written = 0
        self.degraded = False
        self._save()

    def _save(self) -> None:
        _write_json_atomic(self.folder / MANIFEST, self.manifest.to_dict())

    def append_step(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(STEP_COLUMNS)
        if unknown:
            raise ValueError(f"unknown steps.csv columns: {sorted(unknown)}")
        path = self.folder / STEPS
        with writing(path):
            new = not path.exists()
            with open(path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=STEP_COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow({c: _csv_value(row.get(c)) for c in STEP_COLUMNS})
                f.flush()
                os.fsync(f.fileno())
        self.steps_written += 1

    def append_requests(self, rows: Iterable[Sequence[Any]]) -> int:
        """Append request rows (values in REQUEST_COLUMNS order) as one gzip member."""
        path = self.folder / REQUESTS
        formats = [_REQUEST_FORMAT.get(c, str) for c in REQUEST_COLUMNS]
        lines = [",".join(f(v) for f, v in zip(formats, row, strict=True)) for row in rows]
        if not lines:
            return 0
        with writing(path):
            if not path.exists():
                lines.insert(0, ",".join(REQUEST_COLUMNS))
            with gzip.open(path, "at", compresslevel=3) as f:
                f.write("\n".join(lines) + "\n")
        return len(lines)

    def append_events(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        path = self.folder / EVENTS
        with writing(path):
            new = not path.exists()
            with open(path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=EVENT_COLUMNS, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerows(rows)

    def append_replicas(self, rows: Iterable[dict[str, Any]]) -> None:
        """Each replica's part of a level (a run through a gateway)."""
        rows = [{c: _csv_value(row.get(c)) for c in REPLICA_COLUMNS} for row in rows]
        if not rows:
            return
        path = self.folder / REPLICAS
        with writing(path):
            new = not path.exists()
            with open(path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=REPLICA_COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerows(rows)

    def write_accuracy(self, summary: dict[str, Any]) -> None:
        path = self.folder / ACCURACY
        with writing(path):
            _write_json_atomic(path, summary)

    def update(self, **changes: Any) -> None:
        self.manifest = replace(self.manifest, **changes)
        self._save()

    def warn(self, message: str) -> None:
        self.manifest = self.manifest.with_warning(message)
        self._save()

    def degrade(self, message: str) -> None:
        """A warning that keeps the run from being `complete` (failed requests, a shared
        server): it ends `partial`, whatever else goes well."""
        self.degraded = True
        self.warn(message)

    def finish(self, status: RunStatus, warnings: tuple[str, ...] = ()) -> None:
        self.manifest = self.manifest.finished(status, warnings)
        self._save()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb):
        if exc_type is None:
            if self.manifest.status == "running":
                self.finish("partial" if self.degraded else "complete")
            return
        if exc_type is KeyboardInterrupt:
            reason = "interrupted"
        elif isinstance(exc, SonicBenchError):
            reason = str(exc)
        else:
            reason = f"{exc_type.__name__}: {exc}"
        self.abandon(reason)

    def abandon(self, reason: str) -> None:
        """The run ends early for `reason`: `partial` if a level was written, else
        `failed`. Never raises: the run already fails with its own error, and a disk
        that took no more must not hide it (the status is then written over the
        manifest's own blocks if it fits)."""
        status: RunStatus = "partial" if self.steps_written else "failed"
        self.manifest = self.manifest.finished(status, (f"run ended early: {reason}",))
        try:
            self._save()
        except ResultsUnwritable:
            with contextlib.suppress(OSError):
                _write_json_in_place(self.folder / MANIFEST, self.manifest.to_dict())


@dataclass(frozen=True)
class StoredRun:
    folder: Path
    manifest: Manifest
    steps: list[dict[str, str]]
    replicas: list[dict[str, str]] = field(default_factory=list)  # replicas.csv, if any
    accuracy: dict[str, Any] | None = None  # accuracy.json, an accuracy run's


def read_manifest(folder: Path) -> Manifest:
    """The typed manifest of a run folder; one clear error when it cannot be."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SonicBenchError(f"{path} is missing: {folder} is not a sonic-bench run") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SonicBenchError(f"{path} is corrupt ({e}): re-run or remove it") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise SonicBenchError(
            f"{path}: schema_version {version!r} is not one this sonic-bench reads ({readable})"
        )
    return Manifest.from_dict(data, str(path))


def read_run(folder: Path) -> StoredRun:
    manifest = read_manifest(folder)
    steps_path = folder / STEPS
    steps: list[dict[str, str]] = []
    if steps_path.exists():
        with open(steps_path, newline="") as f:
            steps = list(csv.DictReader(f))
    replicas: list[dict[str, str]] = []
    if (folder / REPLICAS).exists():
        with open(folder / REPLICAS, newline="") as f:
            replicas = list(csv.DictReader(f))
    accuracy = None
    if (folder / ACCURACY).exists():
        try:
            accuracy = json.loads((folder / ACCURACY).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SonicBenchError(f"{folder / ACCURACY} is corrupt ({e}): re-run it") from None
    return StoredRun(folder, manifest, steps, replicas, accuracy)
