"""perf_analyzer's CSV report (`-f FILE`, with `--verbose-csv`): read into steps.csv rows,
and steps.csv rows written in its format, so that scripts written for one read the other.

Times in perf_analyzer's report are microseconds per request; sonic-bench keeps latency
in milliseconds and server times in microseconds.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from sonic_bench.errors import SonicBenchError

LOAD_COLUMNS = {"closed": "Concurrency", "open": "Request Rate"}
COLUMNS = (
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
    "Avg latency",
)
# steps.csv column <- perf_analyzer column, and the factor from its unit (us) to ours
TO_STEPS = {
    "latency_ms_p50": ("p50 latency", 1e-3),
    "latency_ms_p90": ("p90 latency", 1e-3),
    "latency_ms_p95": ("p95 latency", 1e-3),
    "latency_ms_p99": ("p99 latency", 1e-3),
    "latency_ms_avg": ("Avg latency", 1e-3),
    "server_queue_us": ("Server Queue", 1.0),
    "server_compute_input_us": ("Server Compute Input", 1.0),
    "server_compute_infer_us": ("Server Compute Infer", 1.0),
    "server_compute_output_us": ("Server Compute Output", 1.0),
}


SERVER_COLUMNS = (
    "server_queue_us",
    "server_compute_input_us",
    "server_compute_infer_us",
    "server_compute_output_us",
)


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def read_report(path: Path) -> list[dict[str, float]]:
    """The rows of a perf_analyzer CSV report, as numbers."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise SonicBenchError(f"perf_analyzer wrote no report at {path} ({e.strerror})") from None
    if not rows or "Inferences/Second" not in rows[0]:
        raise SonicBenchError(f"{path} is not a perf_analyzer CSV report")
    return [{k: _number(v) for k, v in row.items() if k} for row in rows]


def to_step(row: dict[str, float], batch_size: float) -> dict[str, float]:
    """The steps.csv values of one perf_analyzer level."""
    step = {"inferences_per_s": row["Inferences/Second"], "batch_size": batch_size}
    step["requests_per_s"] = row["Inferences/Second"] / batch_size
    for ours, (theirs, factor) in TO_STEPS.items():
        step[ours] = row.get(theirs, math.nan) * factor
    if "Concurrency" in row:
        step["concurrency"] = row["Concurrency"]
    if "Request Rate" in row:
        step["rate"] = row["Request Rate"]
    return step


# One measurement window as `perf_analyzer -v` prints it.
PASS_LINE = re.compile(
    r"Pass \[\d+\] throughput: (?P<throughput>[0-9.eE+-]+) infer/sec\. "
    r"Avg latency: (?P<latency>[0-9.eE+-]+) usec"
)
# perf_analyzer judges stability on its last three windows.
STABILITY_WINDOWS = 3


def read_passes(output: str) -> list[tuple[float, float]]:
    """(inferences/s, average latency in us) of each window `perf_analyzer -v` printed."""
    return [(float(m["throughput"]), float(m["latency"])) for m in PASS_LINE.finditer(output)]


def unstable_step(passes: Sequence[tuple[float, float]], batch_size: float) -> dict[str, float]:
    """A steps.csv row from the last windows of a level that never became stable, as the
    native engine reports such a level: perf_analyzer writes no report for it, and its
    windows give only throughput and mean latency (the percentiles stay empty)."""
    last = passes[-STABILITY_WINDOWS:]
    if not last:
        return {}
    throughput = sum(t for t, _ in last) / len(last)
    latency_us = sum(lat for _, lat in last) / len(last)
    return {
        "inferences_per_s": throughput,
        "requests_per_s": throughput / batch_size,
        "batch_size": batch_size,
        "latency_ms_avg": latency_us * 1e-3,
    }


def _us(value: object, factor: float = 1.0) -> str:
    number = _number(value) * factor
    return "" if math.isnan(number) else f"{number:.0f}"


def from_steps(steps: Iterable[dict[str, str]], mode: str) -> tuple[list[str], list[list[str]]]:
    """perf_analyzer's header and rows for a run's steps.csv rows.

    sonic-bench times a request end to end and does not split the client's send and
    receive from the network: those are in "Network+Server Send/Recv", the average
    latency less the server's queue and compute times; "Client Send" and "Client Recv"
    are left empty rather than invented."""
    load = LOAD_COLUMNS["open" if mode == "open" else "closed"]
    rows = []
    for step in steps:
        level = step.get("rate") if mode == "open" else step.get("concurrency")
        server = [_number(step.get(c)) for c in SERVER_COLUMNS]
        avg_us = _number(step.get("latency_ms_avg")) * 1000
        network = avg_us - sum(server) if not any(map(math.isnan, server)) else math.nan
        rows.append(
            [
                f"{_number(level):g}",
                f"{_number(step.get('inferences_per_s')):.1f}",
                "",
                _us(network),
                *(_us(v) for v in server),
                "",
                *(_us(step.get(f"latency_ms_{p}"), 1000) for p in ("p50", "p90", "p95", "p99")),
                _us(avg_us),
            ]
        )
    return [load, *COLUMNS], rows


def write_report(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
