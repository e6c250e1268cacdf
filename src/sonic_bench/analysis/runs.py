"""Reading run folders (schema v1) for analysis, whichever tool wrote them."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sonic_bench.errors import SonicBenchError
from sonic_bench.results.store import MANIFEST, STEPS, read_run


class SkippedRun(SonicBenchError):
    """A run that cannot be analysed; the others still are."""


@dataclass(frozen=True)
class LoadedRun:
    folder: Path
    manifest: dict
    steps: pd.DataFrame
    events: pd.DataFrame | None
    metrics: pd.DataFrame | None

    @property
    def run_id(self) -> str:
        return self.manifest.get("run_id", self.folder.name)

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "?")

    @property
    def requests_path(self) -> Path | None:
        path = self.folder / "requests.csv.gz"
        return path if path.exists() else None


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
        raise SkippedRun(f"{folder}: no finished load level (steps.csv is missing or empty)")
    return LoadedRun(
        folder=folder,
        manifest=stored.manifest,
        steps=steps,
        events=_csv(folder / "events.csv", "events.csv"),
        metrics=_csv(folder / "metrics.csv.gz", "metrics.csv.gz"),
    )


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
