"""`sonic-bench baseline`: CPU-only, in-process inference, as the paper's grid jobs did."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonic_bench.cli.common import print_table, progress
from sonic_bench.measure.baseline import DEFAULT_SESSION_BATCH
from sonic_bench.measure.cpu_only import parse_layouts
from sonic_bench.measure.level import LevelHooks, MeasurementSettings
from sonic_bench.measure.verdict import parse_percentiles
from sonic_bench.measure.windows import StabilityRule
from sonic_bench.runs.baseline import BASELINE_SETTINGS, BaselinePlan, BaselineRun, run_baseline
from sonic_bench.workload.batching import parse_batch_setting
from sonic_bench.workload.detector import PATCHES_PER_EVENT
from sonic_bench.workload.event import DEFAULT_SEED as WORKLOAD_SEED


def register(commands) -> None:
    parser = commands.add_parser(
        "baseline", help="in-process onnxruntime throughput: the CPU-only reference"
    )
    parser.add_argument("--batch", default="small,large", help="batch settings (%(default)s)")
    parser.add_argument(
        "--layouts",
        default="1x1,Nx1,1xN",
        help="THREADSxPROCESSES side by side, N for the cores (default 1x1,Nx1,1xN): the "
        "best is the machine's CPU-only reference",
    )
    s = BASELINE_SETTINGS
    parser.add_argument("--warmup", type=float, default=s.warmup_s, help="seconds left out")
    parser.add_argument("--window", type=float, default=s.window_s, help="seconds per window")
    parser.add_argument("--window-requests", type=int, default=s.window_requests)
    parser.add_argument("--max-windows", type=int, default=s.max_windows)
    parser.add_argument("--stability", type=float, default=s.rule.tolerance)
    parser.add_argument(
        "--percentiles",
        default="50",
        help="latency percentiles reported and judged (50)",
    )
    parser.add_argument("--session-batch", type=int, default=DEFAULT_SESSION_BATCH)
    parser.add_argument("--seed", type=int, default=WORKLOAD_SEED, help="workload seed")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--label", default="baseline")
    parser.set_defaults(run=run)


def plan_from(args: argparse.Namespace) -> BaselinePlan:
    return BaselinePlan(
        settings=tuple(parse_batch_setting(s) for s in args.batch.split(",") if s),
        layouts=parse_layouts(args.layouts),
        measurement=MeasurementSettings(
            window_s=args.window,
            warmup_s=args.warmup,
            max_windows=args.max_windows,
            window_requests=args.window_requests,
            rule=StabilityRule(tolerance=args.stability),
        ),
        percentiles=parse_percentiles(args.percentiles),
        session_batch=args.session_batch,
        seed=args.seed,
        results=args.results,
        label=args.label,
    )


def run(args: argparse.Namespace) -> int:
    hooks = LevelHooks(on_progress=[progress], on_warning=[lambda m: progress(f"warning: {m}")])
    baseline = run_baseline(plan_from(args), hooks)
    _print(baseline)
    return 0


def _print(baseline: BaselineRun) -> None:
    rows = [
        (
            r.layout.threads,
            r.layout.processes,
            r.batch_size,
            r.inferences_per_s,
            row["latency_ms_p50"],
            r.cpu_percent,
            r.seconds_per_event,
            row["verdict"],
        )
        for r, row in zip(baseline.results, baseline.rows, strict=True)
    ]
    headers = ("threads", "processes", "batch", "inf/s", "p50 ms", "cpu %")
    print_table((*headers, f"s/{PATCHES_PER_EVENT} patches", "verdict"), rows)
    verdict = baseline.verdict
    print(f"result: {verdict.text}")
    for reason in verdict.reasons:
        print(f"  {reason}")
    print(f"results: {baseline.folder}")
