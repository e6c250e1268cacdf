"""`sonic-bench workload`: simulate ProtoDUNE-SP events, store them, show them."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sonic_bench.cli.common import print_table, progress
from sonic_bench.workload.batching import LARGE_BATCH_SETTING, SMALL_BATCH_SETTING
from sonic_bench.workload.dataset import write_dataset
from sonic_bench.workload.display import busiest_plane, event_display, patch_grid
from sonic_bench.workload.event import DEFAULT_SEED, Event, simulate_event
from sonic_bench.workload.summary import summarize_events


def register(commands) -> None:
    parser = commands.add_parser("workload", help="ProtoDUNE-SP events, hits and patches")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    generate = verbs.add_parser("generate", help="simulate events into a workload file")
    _event_options(generate)
    generate.add_argument("--events", type=_positive_int, default=4, help="(default %(default)s)")
    generate.add_argument("--output", type=Path, default=Path("workload.sbwl"))
    generate.set_defaults(run=run_generate)

    show = verbs.add_parser("show", help="PNG event display and example patches")
    _event_options(show)
    show.add_argument("--event", type=int, default=0, help="event index (%(default)s)")
    show.add_argument("--apa", type=int, help="APA to draw (default: the busiest)")
    show.add_argument("--output-dir", type=Path, default=Path("results/workload"))
    show.set_defaults(run=run_show)

    stats = verbs.add_parser("stats", help="hits, labels, sparsity, batches of simulated events")
    _event_options(stats)
    stats.add_argument("--events", type=_positive_int, default=3)
    stats.set_defaults(run=run_stats)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _event_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="(default %(default)s)")
    parser.add_argument(
        "--event-scale",
        type=_positive_float,
        default=1.0,
        help="shrink all activity by this factor (1 = ~55,000 hits per event)",
    )


def run_generate(args: argparse.Namespace) -> int:
    began = time.perf_counter()

    def report(event: Event) -> None:
        progress(f"event {event.index + 1}/{args.events}: {len(event.hits):,} hits")

    write_dataset(args.output, args.seed, args.events, args.event_scale, on_event=report)
    size = args.output.stat().st_size / 1e6
    print(
        f"wrote {args.output}: {args.events} events, {size:.1f} MB, "
        f"{time.perf_counter() - began:.1f} s"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    event = simulate_event(args.seed, args.event, args.event_scale)
    apa = busiest_plane(event) if args.apa is None else args.apa
    args.output_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        event_display(event, apa, plane, args.output_dir / f"event{args.event}_apa{apa}_{name}.png")
        for plane, name in enumerate("UVZ")
    ]
    paths.append(patch_grid(event, args.output_dir / f"event{args.event}_patches.png"))
    for path in paths:
        print(f"wrote {path}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    summary = summarize_events(
        args.seed,
        args.events,
        args.event_scale,
        (SMALL_BATCH_SETTING, LARGE_BATCH_SETTING),
        on_event=lambda i: progress(f"simulated event {i + 1}/{args.events}"),
    )
    print(f"hits per event: {summary.hits_mean:,.0f} +- {summary.hits_std:,.0f}")
    print(
        "label fractions: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.label_fractions.items())
    )
    print(f"zero pixels in patches: {summary.zero_fraction:.3f}")
    print(
        f"zlib compression ratio: patches {summary.compression_ratio:.1f}x, "
        f"uniform random {summary.random_compression_ratio:.2f}x"
    )
    print_table(
        ("setting", "requests/event", "avg batch"),
        [(s, b.requests_per_event, b.avg_batch_size) for s, b in summary.batches.items()],
    )
    return 0
