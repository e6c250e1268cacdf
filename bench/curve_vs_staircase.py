"""Issue 32's figures: the queueing network's whole curve against the default staircase.

Per batch setting, on one embedded server: an HTTP sweep of the dynamic-batching model
(the jobs' protocol and model), then Locust's default staircase of 1-400 grid jobs
against it, then `analyze` of both. Printed per setting: the median absolute relative
error of the predicted module time over the steps, for the MVA curve and for the
paper's asymptotes side by side, and the knee (module time twice its unloaded value)
read off the curve and off the measured steps. About 20 minutes a setting.

    .venv/bin/python bench/curve_vs_staircase.py [--batches small,large] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, embedded_server

from sonic_bench.process import free_port

SONIC = [sys.executable, "-m", "sonic_bench.cli"]
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadgen" / "sonic.py")]
SWEEP = ["--concurrency", "1-32", "--window", "2", "--window-requests", "40", "--warmup", "2",
         "--max-windows", "6", "--metrics", "off", "--dynamic-batching", "on"]  # fmt: skip


def measure(server, batch: str, results: Path) -> None:
    started = time.monotonic()
    sweep = [*SONIC, "sweep", "--url", server.http_url, "--protocol", "http", "--batch", batch]
    subprocess.run([*sweep, *SWEEP, "--results", str(results)], check=True)
    locust = [
        *LOCUST, "--headless", "--url", server.http_url, "--protocol", "http", "--batch", batch,
        "--results", str(results), "--metrics", "off", "--only-summary",
        "--prometheus-port", str(free_port()),
    ]  # fmt: skip
    subprocess.run(locust, check=True)
    print(f"{batch}: measured in {time.monotonic() - started:.0f} s", file=sys.stderr)


def figures(results: Path) -> dict:
    done = subprocess.run(
        [*SONIC, "analyze", str(results), "--json", "--output", str(results / "analysis")],
        check=True,
        capture_output=True,
        text=True,
    )
    (loadgen,) = [r for r in json.loads(done.stdout)["runs"] if r["kind"] == "loadgen"]
    check = loadgen["prediction"]["measured_against_curve"]
    return {
        "run": loadgen["run_id"],
        "mare_mva": check["mare_mva"],
        "mare_asymptotes": check["mare_asymptotes"],
        "knee_mva": check["knee_mva"],
        "knee_measured": check["knee_measured"],
        "steps": check["steps"],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="small,large")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "curve-check")
    args = parser.parse_args()
    out = {}
    with embedded_server() as server:
        for batch in args.batches.split(","):
            folder = args.results / batch
            measure(server, batch, folder)
            out[batch] = figures(folder)
    for batch, f in out.items():
        knee = (
            f"{f['knee_mva']:.1f} vs {f['knee_measured']:.1f} measured "
            f"({f['knee_mva'] / f['knee_measured']:.2f})"
            if f["knee_mva"] and f["knee_measured"]
            else f"{f['knee_mva']} vs {f['knee_measured']} measured"
        )
        print(
            f"{batch}: median |error| of the module time over {len(f['steps'])} steps: MVA "
            f"{f['mare_mva']:.1%}, asymptotes {f['mare_asymptotes']:.1%}; knee (2x) {knee}"
        )
        for s in f["steps"]:
            print(
                f"  {s['users']:>5.0f} users: measured {s['measured_module_s']:.3f} s, MVA "
                f"{s['mva_module_s']:.3f} s, asymptotes {s['asymptotes_module_s']:.3f} s"
            )
    (args.results / "figures.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
