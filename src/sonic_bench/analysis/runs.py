"""Reading run folders (schema v1) for analysis, whichever tool wrote them."""

from __future__ import annotations

import gzip
import socket
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import psutil

from sonic_bench.accuracy.drift import AccuracySummary
from sonic_bench.errors import SonicBenchError
from sonic_bench.results.schema import STEP_COLUMNS, Manifest
from sonic_bench.results.store import EVENTS, MANIFEST, REPLICAS, REQUESTS, STEPS, read_run


class SkippedRun(SonicBenchError):
    """A run that cannot be analysed; the others still are."""


@dataclass(frozen=True)
class LoadedRun:
    folder: Path
    manifest: Manifest
    steps: pd.DataFrame
    events: pd.DataFrame | None
    metrics: pd.DataFrame | None
    notes: tuple[str, ...] = ()  # what a reader must know before trusting the figures
    requests_intact: bool = True
    replicas: pd.DataFrame | None = None  # each replica's part of each level (a gateway's)
    accuracy: AccuracySummary | None = None  # an accuracy run's comparison

    @property
    def status(self) -> str:
        """The manifest's status, or `interrupted` for a run left `running` by a harness
        that is gone (killed, or the machine went down)."""
        if self.manifest.status == "running" and not _writer_alive(self.manifest):
            return "interrupted"
        return self.manifest.status

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def requests_path(self) -> Path | None:
        path = self.folder / REQUESTS
        return path if path.exists() and self.requests_intact else None


def _writer_alive(manifest: Manifest) -> bool:
    """Whether the process that writes this run still runs (on this machine)."""
    pid = manifest.harness.pid
    if pid is None or manifest.machine.hostname != socket.gethostname():
        return False
    return psutil.pid_exists(pid)


# steps.csv columns without which a run says nothing; the others may be missing in runs
# written by other tools or older versions and read as empty.
REQUIRED_STEP_COLUMNS = ("step", "concurrency", "inferences_per_s")


def _label_columns(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Schema v1 wrote a series' labels as one `k=v;k=v` string: one column per label,
    as v2 writes them."""
    if frame is None or "labels" not in frame:
        return frame
    pairs = (
        frame.pop("labels")
        .fillna("")
        .map(lambda text: dict(p.split("=", 1) for p in text.split(";") if "=" in p))
    )
    return frame.join(pd.DataFrame(list(pairs), index=frame.index))


def _gzip_intact(path: Path) -> bool:
    """Runs append whole gzip members; a copy cut off mid-member fails to decompress."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error):
        return False
    return True


def _notes(manifest: Manifest, status: str, steps: pd.DataFrame, events, intact: bool):
    notes = []
    if status == "interrupted":
        notes.append("the run never finished: its harness was killed (status still 'running')")
    elif status == "running":
        notes.append("the run is still running: figures are those of the levels done so far")
    elif status in ("partial", "failed"):
        why = [w for w in manifest.warnings if any(k in w for k in _REASON_WORDS)]
        reasons = "; ".join((why or list(manifest.warnings))[:3]) or "no reason recorded"
        notes.append(f"the run ended {status}: {reasons}")
    if any("shared server" in w for w in manifest.warnings):
        notes.append(
            "shared server: another client used the model during the run, so its "
            "figures are not this run's alone"
        )
    errors = pd.to_numeric(steps.get("errors"), errors="coerce").fillna(0).sum()
    if errors:
        notes.append(f"{errors:.0f} requests failed during the measured levels")
    if events is not None and "failed_requests" in events:
        failed = int((events["failed_requests"] > 0).sum())
        if failed:
            notes.append(f"{failed} events had failed requests and are left out of the fit")
    if not intact:
        notes.append("requests.csv.gz is truncated: per-request figures are left out")
    return tuple(notes)


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders among `paths`: each one itself, or the run folders inside it."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise SonicBenchError(f"{path} does not exist")
        if (path / MANIFEST).exists():
            found.append(path)
        else:
            found += sorted(p.parent for p in path.glob(f"*/{MANIFEST}"))
    return found


def _ends_mid_line(path: Path) -> bool:
    """Runs append whole lines: a last line without its newline means a cut-off copy."""
    if path.suffix == ".gz" or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) != b"\n"


def _csv(path: Path, what: str) -> pd.DataFrame | None:
    if not path.exists():
        return None
    if _ends_mid_line(path):
        raise SkippedRun(f"{path}: {what} is truncated (its last line is cut off)")
    try:
        return pd.read_csv(path)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        EOFError,
        zlib.error,
    ) as e:
        raise SkippedRun(f"{path}: {what} is corrupt or truncated ({type(e).__name__})") from None


def load_run(folder: Path) -> LoadedRun:
    try:
        stored = read_run(folder)
    except SonicBenchError as e:
        raise SkippedRun(str(e)) from None
    steps = _csv(folder / STEPS, "steps.csv")
    if steps is None or steps.empty:
        status = LoadedRun(folder, stored.manifest, pd.DataFrame(), None, None).status
        raise SkippedRun(
            f"{folder}: no finished load level (steps.csv is missing or empty; the run is {status})"
        )
    missing = [c for c in REQUIRED_STEP_COLUMNS if c not in steps]
    if missing:
        raise SkippedRun(f"{folder / STEPS}: column(s) {', '.join(missing)} missing")
    steps = steps.reindex(columns=list(dict.fromkeys([*STEP_COLUMNS, *steps.columns])))
    steps, non_finite = _without_non_finite(steps)
    events = _csv(folder / EVENTS, "events.csv")
    if events is not None and "failed_requests" not in events:
        events["failed_requests"] = 0  # written before failures were counted per event
    requests = folder / REQUESTS
    intact = not requests.exists() or _gzip_intact(requests)
    run = LoadedRun(
        folder=folder,
        manifest=stored.manifest,
        steps=steps,
        events=events,
        metrics=_label_columns(_csv(folder / "metrics.csv.gz", "metrics.csv.gz")),
        requests_intact=intact,
        replicas=_csv(folder / REPLICAS, "replicas.csv"),
        accuracy=AccuracySummary.from_dict(stored.accuracy) if stored.accuracy else None,
    )
    notes = _notes(run.manifest, run.status, steps, events, intact)
    if non_finite:
        notes += (
            f"steps.csv holds infinite values in {', '.join(non_finite)}: they are left "
            "out, not taken as figures",
        )
    return replace(run, notes=notes)


def _without_non_finite(steps: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Numeric columns with +-inf (a tool's division by a zero span): read as missing."""
    numeric = steps.select_dtypes("number")
    infinite = [c for c in numeric if numeric[c].isin([float("inf"), float("-inf")]).any()]
    if infinite:
        steps = steps.copy()
        steps[infinite] = steps[infinite].replace([float("inf"), float("-inf")], float("nan"))
    return steps, infinite


# Warnings that say why a run is not complete, before the others (instability and the like).
_REASON_WORDS = ("failed", "ended early", "run ended", "shared server", "cannot write", "timed out")


def request_latency_percentiles(path: Path) -> pd.DataFrame:
    """Per step: successful requests, patches and latency percentiles from requests.csv.gz.

    Reads only the needed columns with compact types: a million records stay well
    under a second and a few hundred MB.
    """
    try:
        frame = pd.read_csv(
            path,
            usecols=["step", "latency_ms", "batch_size", "ok"],
            dtype={"step": "int32", "latency_ms": "float32", "batch_size": "int32", "ok": "int8"},
        )
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        ValueError,
        OSError,
        EOFError,
        zlib.error,
    ) as e:
        raise SkippedRun(
            f"{path}: requests are corrupt or truncated ({type(e).__name__})"
        ) from None
    ok = frame[frame["ok"] == 1]
    grouped = ok.groupby("step")["latency_ms"]
    table = grouped.quantile([0.5, 0.9, 0.99]).unstack()
    table.columns = ["p50_ms", "p90_ms", "p99_ms"]
    table["requests"] = grouped.size()
    table["patches"] = ok.groupby("step")["batch_size"].sum()
    table["errors"] = frame[frame["ok"] == 0].groupby("step").size()
    return table.fillna({"errors": 0}).reset_index()
