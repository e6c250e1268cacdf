"""`sonic-bench sweep`: a perf_analyzer-grade sweep of concurrency (or request rate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonic_bench.accuracy.run import DEFAULT_EVENT_SCALE, DEFAULT_EVENTS, AccuracyPlan
from sonic_bench.cli.common import float_list, int_list, progress
from sonic_bench.cli.metrics_options import add_metrics_options, metrics_options
from sonic_bench.cli.serve_cmd import add_server_options, gateway_options, server_config
from sonic_bench.cli.sweep_output import print_summary, print_variants, show_window
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import LevelHooks, MeasurementSettings
from sonic_bench.measure.verdict import DEFAULT_PERCENTILES, parse_percentiles
from sonic_bench.measure.windows import StabilityRule
from sonic_bench.runs.options import TargetOptions, add_target_options, target_options
from sonic_bench.runs.sweep import (
    SweepPlan,
    configurations,
    levels,
    run_sweep,
)
from sonic_bench.runs.target import Target


def register(commands) -> None:
    parser = commands.add_parser("sweep", help="throughput and latency against load levels")
    add_server_options(parser)
    target = parser.add_argument_group("target (shared with the Locust jobs)")
    add_target_options(
        target,
        "comma list, one run each: small (~235), large (~1693, the default) or N for the "
        "ProtoDUNE-SP workload (the batch-size setting); N or LOW..HIGH for any other data "
        "(default 1)",
    )
    models = parser.add_argument_group("models of the embedded repository")
    models.add_argument("--calibration", action="store_true", help="the zero-compute model")
    models.add_argument(
        "--dynamic-batching",
        choices=("on", "off", "both"),
        default="on",
        help="EmTrackMichelId with dynamic batching, without, or both (when no --model)",
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--concurrency", type=int_list, help="levels, e.g. 1,2,4 or 1-64 (default 1-64)"
    )
    load.add_argument("--rate", type=float_list, help="open loop: request rates per second")
    load.add_argument("--poisson", action="store_true", help="open loop: Poisson arrivals")
    load.add_argument("--max-in-flight", type=int, default=64, help="open loop: worker cap")
    load.add_argument(
        "--latency-budget",
        type=float,
        metavar="P99_MS",
        help="find the highest concurrency in the --concurrency range whose p99 stays within "
        "this many ms (binary search, as perf_analyzer's --latency-threshold)",
    )
    measure = parser.add_argument_group("measurement")
    measure.add_argument("--window", type=float, default=5.0, help="seconds per window")
    measure.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    measure.add_argument("--max-windows", type=int, default=10)
    measure.add_argument(
        "--window-requests",
        type=int,
        default=0,
        help="count windows: each window also holds this many answers (perf_analyzer's "
        "count_windows); 0: time windows only",
    )
    measure.add_argument(
        "--busy-poll",
        type=float,
        default=0.0,
        metavar="US",
        help="poll the sockets without sleeping for up to US microseconds while requests "
        "are out (costs a core; on a VM an idle core wakes late): 0 sleeps",
    )
    measure.add_argument("--stability", type=float, default=0.10, help="tolerance (0.10 = 10%%)")
    measure.add_argument(
        "--stability-latency",
        choices=("avg", "p99"),
        default="avg",
        help="latency that must agree too: average (perf_analyzer's default) or p99",
    )
    measure.add_argument(
        "--trials", type=int, default=1, help="passes over the levels inside each run"
    )
    measure.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="whole sweeps, every configuration each time (a run folder each): analyze "
        "gives each level's mean, 95%% t-interval and coefficient of variation across them",
    )
    measure.add_argument(
        "--percentiles",
        default=",".join(map(str, DEFAULT_PERCENTILES)),
        help="latency percentiles reported and judged (50,90,95,99): one from too few "
        "answers is its early-stopping bound and makes the level INVALID",
    )
    measure.add_argument(
        "--reference",
        action="store_true",
        help="measure in-process onnxruntime before each level (for sonic-bench check)",
    )
    measure.add_argument("--reference-seconds", type=float, default=2.0)
    measure.add_argument(
        "--engine",
        choices=("native", "perf_analyzer"),
        default="native",
        help="who sends the load: sonic-bench, or NVIDIA's perf_analyzer on the same levels",
    )
    accuracy = parser.add_argument_group("accuracy beside speed")
    accuracy.add_argument(
        "--accuracy",
        action="store_true",
        help="after each model's levels, send a workload's every batch and compare each "
        "answer with the FP32 network in-process (as `sonic-bench accuracy`); with "
        "--model A,B,... one table of speed and drift per model",
    )
    accuracy.add_argument(
        "--accuracy-events", type=int, default=DEFAULT_EVENTS, help="ProtoDUNE-SP events"
    )
    accuracy.add_argument(
        "--accuracy-event-scale",
        type=float,
        default=DEFAULT_EVENT_SCALE,
        help="fraction of a full event's hits (default %(default)s, as `sonic-bench accuracy`)",
    )
    accuracy.add_argument(
        "--accuracy-concurrency", type=int, default=4, help="requests in flight meanwhile"
    )
    workload = parser.add_argument_group("workload")
    workload.add_argument("--pool-batches", type=int, default=24, help="batches replayed")
    workload.add_argument(
        "--uniform-batches",
        action="store_true",
        help="every request of the average batch size, as perf_analyzer's -b sends (a "
        "like-for-like cross-check with --engine perf_analyzer), not the realistic mix; "
        "with --shared-memory one batch, as perf_analyzer's shared memory replays",
    )
    add_metrics_options(parser)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--label", default="sweep")
    parser.set_defaults(run=run)


def plan_from(args: argparse.Namespace) -> SweepPlan:
    options = target_options(args)
    return SweepPlan(
        configurations=configurations(
            options.batches, args.dynamic_batching, options.model, args.calibration
        ),
        levels=levels(args.concurrency, args.rate, args.poisson, args.max_in_flight),
        settings=MeasurementSettings(
            window_s=args.window,
            warmup_s=args.warmup,
            max_windows=args.max_windows,
            rule=StabilityRule(tolerance=args.stability, latency=args.stability_latency),
            window_requests=args.window_requests,
            busy_poll_us=args.busy_poll,
        ),
        trials=args.trials,
        repeat=args.repeat,
        percentiles=parse_percentiles(args.percentiles),
        reference_seconds=args.reference_seconds if args.reference else None,
        seed=options.seed,
        pool_batches=args.pool_batches,
        input_data=options.input_data,
        shapes=options.shapes,
        results=args.results,
        label=args.label,
        engine=args.engine,
        latency_budget_ms=args.latency_budget,
        uniform_batches=args.uniform_batches,
        accuracy=_accuracy_plan(args, options) if args.accuracy else None,
    )


def _accuracy_plan(args: argparse.Namespace, options: TargetOptions) -> AccuracyPlan:
    try:
        return AccuracyPlan(
            model=options.model or "",
            inputs=options.inputs(None),
            concurrency=args.accuracy_concurrency,
            events=args.accuracy_events,
            event_scale=args.accuracy_event_scale,
            results=args.results,
        )
    except SonicBenchError as e:  # it names `sonic-bench accuracy`'s flags: name ours
        raise SonicBenchError(str(e).replace("--", "--accuracy-", 1)) from None


def target_from(args: argparse.Namespace, models: tuple[str, ...] = ()) -> Target:
    """The target of the shared options; an embedded server loads `models` (all: ())."""
    options = target_options(args)
    return Target(
        url=options.url,
        protocol=options.protocol,
        ssl=options.ssl,
        headers=dict(options.headers),
        shared_memory=options.shared_memory,
        metrics_url=args.metrics_url,
        server=None if options.url else server_config(args, models),
        timeout_s=options.timeout_s,
        connect_timeout_s=options.connect_timeout_s,
        tls=options.tls,
        replica_urls=options.replica_urls,
        replica_metrics_urls=options.replica_metrics_urls,
        replicas=args.replicas,
        gateway=gateway_options(args),
    )


def run(args: argparse.Namespace) -> int:
    plan = plan_from(args)
    hooks = LevelHooks(
        on_window=[show_window],
        on_progress=[progress],
        on_warning=[lambda m: progress(f"warning: {m}")],
    )
    # The embedded server loads what the sweep measures: a repository of many models
    # (the reduced-precision variants) starts in a fraction of the time.
    models = tuple(dict.fromkeys(c.model for c in plan.configurations))
    sweeps = run_sweep(plan, target_from(args, models), metrics_options(args), hooks)
    for sweep in sweeps:
        print_summary(sweep)
    checked = [s for s in sweeps if s.accuracy is not None]
    if checked:
        print_variants(sweeps)
    unclean = [s for s in sweeps if s.status != "complete"]
    unclean += [s for s in checked if s.accuracy.status != "complete"]
    if unclean:
        progress(
            f"sonic-bench: {len(unclean)} of {len(sweeps)} runs partial "
            f"({sum(s.errors for s in unclean)} failed requests): their figures are not clean"
        )
        return 1
    return 0
