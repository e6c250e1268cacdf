"""Schema-v1 run folders with known truth (a knee, a flat module time), written the way
any tool could write them: what the analysis is tested and benchmarked against."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sonic_bench.results.schema import (
    Harness,
    LoadInfo,
    Machine,
    Manifest,
    ServerInfo,
    WorkloadInfo,
    make_run_id,
    utc_now,
)
from sonic_bench.results.store import RunWriter
from sonic_bench.workload.detector import PATCHES_PER_EVENT

LEVELS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 400)
MACHINE = Machine("synthetic", "none", 1, 1)


def _manifest(kind: str, label: str, patches: int = PATCHES_PER_EVENT, parameters=None) -> Manifest:
    return Manifest(
        run_id=make_run_id(label),
        kind=kind,
        started_at=utc_now(),
        harness=Harness("test", None),
        server=ServerInfo(
            "127.0.0.1:8000",
            "http",
            "2.51",
            "cnn_emtrkmichel_1",
            "1",
            {"dynamic_batching": {}},
            True,
            65536,
        ),
        workload=WorkloadInfo(1, 2300, 1693.0, patches, 1.0),
        load=LoadInfo("closed", tuple(float(x) for x in LEVELS), 60.0, False, parameters or {}),
        machine=MACHINE,
    )


def loadgen_run(
    root: Path,
    knee: float,
    flat: float,
    other: float,
    noise: float,
    seed: int,
    events_per_level: int = 10,
    label: str = "synthetic",
    requests_per_event: float | None = None,
) -> Path:
    """Module time = max(flat, slope N - other) with slope = (flat + other) / knee. With
    `requests_per_event` the manifest records the jobs' events as Locust runs do (so a
    sweep beside it yields a prediction)."""
    rng = np.random.default_rng(seed)
    slope = (flat + other) / knee
    parameters: dict = {"preprocess_s_per_event": 7.0}
    if requests_per_event is not None:
        parameters |= {
            "requests_per_event": requests_per_event,
            "other_s_per_event": other,
            "protocol": "http",
        }
    manifest = _manifest("loadgen", f"{label}-{seed}", parameters=parameters)
    with RunWriter(root, manifest) as writer:
        rows = []
        for step, users in enumerate(LEVELS):
            writer.append_step({"step": step, "concurrency": users, "requests": 1})
            for event in range(events_per_level):
                module = max(flat, slope * users - other) * (1 + rng.normal(0, noise))
                rows.append(
                    {
                        "step": step,
                        "users": users,
                        "worker": f"w/{event}",
                        "event": event,
                        "t_start": 0.0,
                        "other_s": other,
                        "module_s": module,
                        "total_s": other + module,
                        "requests": 32,
                        "failed_requests": 0,
                    }
                )
        with open(writer.folder / "events.csv", "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=list(rows[0]))
            out.writeheader()
            out.writerows(rows)
    return writer.folder


def baseline_run(root: Path, single_thread_inf_s: float) -> Path:
    with RunWriter(root, _manifest("baseline", "baseline")) as writer:
        writer.append_step(
            {
                "step": 0,
                "concurrency": 1,
                "batch_size": 1693.0,
                "inferences_per_s": single_thread_inf_s,
            }
        )
        writer.append_step(
            {
                "step": 1,
                "concurrency": 2,
                "batch_size": 1693.0,
                "inferences_per_s": 2 * single_thread_inf_s,
            }
        )
    return writer.folder


def sweep_run(
    root: Path,
    plateau_inf_s: float,
    single_latency_s: float,
    levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
    knee_concurrency: int = 8,
    avg_batch: float = 1693.0,
    requests_per_level: int = 400,
) -> Path:
    """A closed-loop sweep that climbs linearly to `plateau_inf_s` at `knee_concurrency`
    and stays there; one request alone takes `single_latency_s` (1% spread)."""
    manifest = _manifest("sweep", "synthetic-sweep")
    with RunWriter(root, manifest) as writer:
        for step, c in enumerate(levels):
            throughput = plateau_inf_s * min(1.0, c / knee_concurrency)
            latency_ms = c * avg_batch / throughput * 1000 if c > 1 else single_latency_s * 1000
            writer.append_step(
                {
                    "step": step,
                    "concurrency": c,
                    "batch_size": avg_batch,
                    "requests": requests_per_level,
                    "inferences_per_s": throughput,
                    "latency_ms_avg": latency_ms,
                    "latency_ms_std": latency_ms * 0.01,
                    "latency_ms_p99": latency_ms * 1.1,
                }
            )
    return writer.folder
