"""`sonic-bench accuracy`: the served answers against the in-process FP32 reference."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonic_bench.accuracy.reference import MICHEL_THRESHOLD
from sonic_bench.accuracy.run import (
    DEFAULT_BATCHES,
    DEFAULT_EVENT_SCALE,
    DEFAULT_EVENTS,
    AccuracyPlan,
    run_accuracy,
)
from sonic_bench.analysis.report import accuracy_lines
from sonic_bench.cli.common import progress
from sonic_bench.cli.metrics_options import add_metrics_options
from sonic_bench.cli.serve_cmd import add_server_options
from sonic_bench.cli.sweep_cmd import target_from
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import LevelHooks
from sonic_bench.model.repository import MODEL_DYNAMIC_BATCHING
from sonic_bench.runs.options import add_target_options, target_options


def register(commands) -> None:
    parser = commands.add_parser(
        "accuracy",
        help="every batch of a workload through the server under load, each answer compared "
        "with the FP32 network run in-process",
    )
    add_server_options(parser)
    target = parser.add_argument_group("target (shared with sweep and the Locust jobs)")
    add_target_options(
        target,
        "small (~235) or large (~1693, the default, as a sweep's) for the ProtoDUNE-SP "
        "workload; N or LOW..HIGH for any other data (default 1)",
    )
    load = parser.add_argument_group("accuracy run")
    load.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    load.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="ProtoDUNE-SP events sent")
    load.add_argument(
        "--event-scale",
        type=float,
        default=DEFAULT_EVENT_SCALE,
        help="fraction of a full event's hits (default %(default)s: ~5,800 patches)",
    )
    load.add_argument(
        "--batches",
        type=int,
        default=DEFAULT_BATCHES,
        help="requests for a model fed other data than ProtoDUNE-SP's",
    )
    load.add_argument("--passes", type=int, default=1, help="times each batch is sent")
    load.add_argument(
        "--reference",
        type=Path,
        metavar="ONNX",
        help="the FP32 model to compare with (default: sonic-bench's own network)",
    )
    load.add_argument(
        "--michel-threshold",
        type=float,
        default=MICHEL_THRESHOLD,
        help="EmTrackMichelId: the Michel score above which a hit is tagged",
    )
    add_metrics_options(parser)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--label", default="accuracy")
    parser.set_defaults(run=run)


def plan_from(args: argparse.Namespace) -> AccuracyPlan:
    options = target_options(args)
    if len(options.batches) > 1:
        raise SonicBenchError("--batch: an accuracy run sends one setting; give one value")
    return AccuracyPlan(
        model=options.model or MODEL_DYNAMIC_BATCHING,
        inputs=options.inputs(options.batches[0] if options.batches else None),
        concurrency=args.concurrency,
        events=args.events,
        event_scale=args.event_scale,
        batches=args.batches,
        passes=args.passes,
        reference=args.reference,
        michel_threshold=args.michel_threshold,
        results=args.results,
        label=args.label,
    )


def run(args: argparse.Namespace) -> int:
    plan = plan_from(args)
    hooks = LevelHooks(on_progress=[progress], on_warning=[lambda m: progress(f"warning: {m}")])
    done = run_accuracy(plan, target_from(args, (plan.model,)), hooks)
    for line in accuracy_lines(done.summary):
        print(line)
    print(f"served {done.inferences_per_s:,.0f} inf/s with answers kept")
    for warning in done.warnings:
        progress(f"warning: {warning}")
    print(f"results: {done.folder}")
    return 0 if done.status == "complete" else 1
