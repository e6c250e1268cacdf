"""`sonic-bench export`: a run's results in another tool's format."""

from __future__ import annotations

import argparse
from pathlib import Path

from sonic_bench.perf_analyzer.report import from_steps, write_report
from sonic_bench.results.store import read_run


def register(commands) -> None:
    parser = commands.add_parser("export", help="a run's steps in another tool's format")
    parser.add_argument("run_folder", type=Path, metavar="RUN")
    parser.add_argument(
        "--format",
        choices=("perf-analyzer",),
        default="perf-analyzer",
        help="perf-analyzer: its -f CSV report (same columns, microseconds)",
    )
    parser.add_argument(
        "--output", type=Path, help="file to write (default: RUN/perf_analyzer.csv)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    stored = read_run(args.run_folder)
    header, rows = from_steps(stored.steps, stored.manifest.load.mode)
    path = write_report(args.output or args.run_folder / "perf_analyzer.csv", header, rows)
    print(f"wrote {path} ({len(rows)} levels, perf_analyzer's CSV columns)")
    return 0
