"""How often `sonic-bench check` cries wolf, and what it catches, with or without a busy
process beside the benchmark (a shared CI machine).

Runs the CI smoke measurement (repeated trials with the in-process reference, as
`make bench-smoke`) against the unchanged model `--repeats` times, each judged against
one baseline run, then against a copy of the model made `--slower` percent slower (the
`slowdown` parameter of the model repository), and counts the verdicts.

    .venv/bin/python bench/regression_power.py [--repeats 10] [--slower 20] [--background]

Targets (issue 12): with --background, the slower model is caught in at least 9 of 10
tries and the unchanged one flagged in at most 1 of 10.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, Figures, embedded_server

from sonic_bench.measure.level import MeasurementSettings
from sonic_bench.metrics.recording import MetricsOptions
from sonic_bench.model.repository import slowed_copy
from sonic_bench.regress.compare import Outcome, compare, mismatch, overall
from sonic_bench.regress.samples import from_run
from sonic_bench.regress.thresholds import load_thresholds
from sonic_bench.runs.sweep import SweepPlan, configurations, levels, run_sweep
from sonic_bench.runs.target import Target

THRESHOLDS = ROOT / "bench" / "thresholds.toml"
# make bench-smoke's measurement (SMOKE_SWEEP in the Makefile)
SMOKE = MeasurementSettings(window_s=1.0, warmup_s=0.5, max_windows=8)
BUSY = "while True: pass"


def smoke(url: str, results: Path) -> Path:
    plan = SweepPlan(
        configurations([256], "off"),
        levels([1, 2]),
        SMOKE,
        trials=5,
        percentiles=(50,),
        reference_seconds=1.5,
        pool_batches=8,
        results=results,
        label="smoke",
    )
    (run,) = run_sweep(plan, Target(url=url), MetricsOptions(mode="off"))
    return run.folder


def verdict(run: Path, baseline: Path) -> Outcome:
    current, base = from_run(run), from_run(baseline)
    if mismatch(current, base):
        return Outcome.CANNOT_JUDGE
    verdicts = compare(current, base, load_thresholds(THRESHOLDS))
    changes = ", ".join(
        f"{v.metric}@{v.level:g} {v.change:+.1%}{'!' if v.outcome is Outcome.REGRESSION else ''}"
        for v in verdicts
        if v.change is not None
    )
    outcome = overall(verdicts)
    print(f"  {run.name}: {outcome.name} ({changes})", flush=True)
    return outcome


@contextlib.contextmanager
def busy_process(on: bool):
    """One process spinning on a core, as another job on a shared CI machine."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--slower", type=float, default=20.0, help="percent slower model")
    parser.add_argument("--background", action="store_true", help="a busy process beside")
    args = parser.parse_args()
    figures = Figures()
    with tempfile.TemporaryDirectory() as tmp, busy_process(args.background):
        root = Path(tmp)
        with embedded_server() as server:
            baseline = smoke(server.grpc_url, root / "baseline")
            same = [
                verdict(smoke(server.grpc_url, root / f"same{i}"), baseline)
                for i in range(args.repeats)
            ]
        slowdown = round(1 / (1 - args.slower / 100) - 1, 3)
        repo = slowed_copy(ROOT / "model_repository", root / "slow-repo", slowdown)
        with embedded_server(repo) as server:
            slow = [
                verdict(smoke(server.grpc_url, root / f"slow{i}"), baseline)
                for i in range(args.repeats)
            ]
    where = "beside a busy process" if args.background else "on a quiet machine"
    alarms = sum(v is Outcome.REGRESSION for v in same)
    caught = sum(v is Outcome.REGRESSION for v in slow)
    figures.value(
        f"unchanged model {where}: false alarms in {len(same)}",
        alarms,
        target=1,
        fmt="{:d}",
        lower_is_better=True,
    )
    figures.value(
        f"{args.slower:g}% slower model {where}: caught in {len(slow)}",
        caught,
        target=round(0.9 * len(slow)),
        fmt="{:d}",
    )
    unjudged = sum(v is Outcome.CANNOT_JUDGE for v in [*same, *slow])
    figures.value("could not judge", unjudged, target=0, fmt="{:d}", lower_is_better=True)
    figures.exit()


if __name__ == "__main__":
    main()
