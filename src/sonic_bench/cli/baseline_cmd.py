"""`sonic-bench baseline`: CPU-only, in-process inference, as the paper's grid jobs did."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonic_bench.cli.common import int_list, print_table, progress
from sonic_bench.measure.baseline import DEFAULT_SESSION_BATCH
from sonic_bench.measure.level import LevelHooks
from sonic_bench.measure.stats import summarize_latencies
from sonic_bench.runs.baseline import BaselinePlan, BaselineRun, run_baseline
from sonic_bench.workload.batching import parse_batch_setting
from sonic_bench.workload.detector import PATCHES_PER_EVENT
from sonic_bench.workload.event import DEFAULT_SEED as WORKLOAD_SEED


def register(commands) -> None:
    parser = commands.add_parser(
        "baseline", help="in-process onnxruntime throughput: the CPU-only reference"
    )
    parser.add_argument("--batch", default="small,large", help="batch settings (%(default)s)")
    parser.add_argument(
        "--threads", type=int_list, default=[1, 0], help="thread counts, 0 = all cores (1,0)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--session-batch", type=int, default=DEFAULT_SESSION_BATCH)
    parser.add_argument("--seed", type=int, default=WORKLOAD_SEED, help="workload seed")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--label", default="baseline")
    parser.set_defaults(run=run)


def plan_from(args: argparse.Namespace) -> BaselinePlan:
    return BaselinePlan(
        settings=tuple(parse_batch_setting(s) for s in args.batch.split(",") if s),
        threads=tuple(args.threads),
        duration_s=args.duration,
        session_batch=args.session_batch,
        seed=args.seed,
        results=args.results,
        label=args.label,
    )


def run(args: argparse.Namespace) -> int:
    baseline = run_baseline(plan_from(args), LevelHooks(on_progress=[progress]))
    _print(baseline)
    return 0


def _print(baseline: BaselineRun) -> None:
    rows = []
    for r in baseline.results:
        latency = summarize_latencies(r.latencies_ms)
        rows.append(
            (
                r.threads,
                r.batch_size,
                r.inferences_per_s,
                latency.p50_ms,
                latency.p99_ms,
                r.cpu_percent,
                r.seconds_per_event,
            )
        )
    headers = ("threads", "batch", "inf/s", "p50 ms", "p99 ms", "cpu %")
    print_table((*headers, f"s/{PATCHES_PER_EVENT} patches"), rows)
    print(f"results: {baseline.folder}")
