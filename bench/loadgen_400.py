"""Issue 5's figure: 400 Locust users on this machine against the calibration model.

Locust's own CPU warning must not fire, and the throughput the users achieve must be at
least 80% of the standalone sweep's at the same concurrency (interleaved: sweep, locust,
sweep, locust ...). The users here do no other work, so that 400 requests are in flight
as in the sweep.

    .venv/bin/python bench/loadgen_400.py [--users 400] [--seconds 30] [--trials 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, Figures, embedded_server, interleaved

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.level import Level, MeasurementSettings, measure_level
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.results.store import read_run
from sonic_bench.workload.batching import SMALL_BATCH_SETTING
from sonic_bench.workload.pool import simulated_pool


def locust_rate(server, users: int, seconds: float, processes: int = 1) -> tuple[float, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadgen" / "sonic.py"),
            "--headless",
            "--url",
            server.http_url,
            "--protocol",
            "http",
            "--model",
            MODEL_CALIBRATION,
            "--batch-size",
            "small",
            "--event-scale",
            "1",
            "--other-seconds",
            "0",
            "--preprocess-seconds",
            "0",
            "--other-jitter",
            "0",
            "--staircase",
            str(users),
            "--step-seconds",
            str(seconds),
            "--step-seconds-per-user",
            "0",
            "--metrics",
            "off",
            "--results",
            tmp,
            "--only-summary",
        ]
        if processes > 1:
            command += ["--processes", str(processes)]
        subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        (folder,) = Path(tmp).iterdir()
        run = read_run(folder)
        step = run.steps[0]
        print(
            f"  locust x{processes}: {float(step['requests_per_s']):,.0f} requests/s, "
            f"{float(step['inferences_per_s']):,.0f} inf/s, "
            f"client CPU (max per process) {float(step['client_cpu_percent']):.0f}%"
        )
        return float(step["inferences_per_s"]), list(run.manifest.warnings)


def sweep_rate(server, users: int, seconds: float) -> float:
    endpoint = Endpoint(server.http_url, "http")
    batches = [b.patches for b in simulated_pool(SMALL_BATCH_SETTING).sample(16)]
    encoded = EncodedBatches(batches)
    settings = MeasurementSettings(window_s=seconds / 3, warmup_s=3, max_windows=3)
    result = measure_level(
        0,
        Level(concurrency=users),
        lambda: InferClient(endpoint, MODEL_CALIBRATION, encoded),
        settings,
        None,
    )
    return result.inferences_per_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1, help="locust --processes N")
    args = parser.parse_args()
    figures = Figures()
    warnings: list[str] = []
    with embedded_server() as server:

        def with_locust() -> float:
            value, messages = locust_rate(server, args.users, args.seconds, args.processes)
            warnings.extend(messages)
            return value

        users, sweep = interleaved(
            args.trials, with_locust, lambda: sweep_rate(server, args.users, args.seconds)
        )
    cpu_warnings = [w for w in warnings if "CPU warning" in w]
    figures.value(f"Locust, {args.users} users: inf/s", float(np.median(users)))
    figures.value(f"sweep, concurrency {args.users}: inf/s", float(np.median(sweep)))
    figures.ratio("Locust users / sweep", users, sweep, target=0.80)
    figures.value(
        "Locust CPU warnings", len(cpu_warnings), target=0, fmt="{:.0f}", lower_is_better=True
    )
    figures.exit()


if __name__ == "__main__":
    main()
