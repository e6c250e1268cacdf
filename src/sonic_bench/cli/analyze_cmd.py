"""`sonic-bench analyze`: saturation, knees, speedups, plots and a report from run folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sonic_bench.analysis.plots import module_time_plot, server_series_plot, throughput_plot
from sonic_bench.analysis.report import (
    BASELINE_HEADERS,
    LEVEL_HEADERS,
    LOADGEN_HEADERS,
    SWEEP_HEADERS,
    baseline_rows,
    level_rows,
    loadgen_rows,
    sweep_rows,
    write_report,
)
from sonic_bench.analysis.runs import LoadedRun, SkippedRun, find_runs, load_run
from sonic_bench.analysis.summary import (
    summarize_baseline,
    summarize_loadgen,
    summarize_sweep,
    to_json,
)
from sonic_bench.cli.common import print_table, progress
from sonic_bench.errors import SonicBenchError

EXIT_SKIPPED = 3


def register(commands) -> None:
    parser = commands.add_parser("analyze", help="fit, compare and plot run folders")
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or folders of runs")
    parser.add_argument("--output", type=Path, help="report folder (default: PATH/analysis)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead")
    parser.add_argument("--no-plots", action="store_true")
    parser.set_defaults(run=run)


def _load_all(paths: list[Path]) -> tuple[list[LoadedRun], list[str]]:
    runs, skipped = [], []
    for folder in find_runs(paths):
        try:
            runs.append(load_run(folder))
        except SkippedRun as e:
            skipped.append(str(e))
    return runs, skipped


def run(args: argparse.Namespace) -> int:
    runs, skipped = _load_all(args.paths)
    if not runs and not skipped:
        raise SonicBenchError(f"no run folders (with manifest.json) under {args.paths[0]}")
    by_kind = {
        kind: [r for r in runs if r.kind == kind] for kind in ("baseline", "sweep", "loadgen")
    }
    baselines = [summarize_baseline(r) for r in by_kind["baseline"]]
    sweeps = [summarize_sweep(r, baselines) for r in by_kind["sweep"]]
    loadgens = []
    for r in by_kind["loadgen"]:
        try:
            loadgens.append(summarize_loadgen(r, baselines))
        except (SkippedRun, ValueError) as e:
            skipped.append(f"{r.folder}: {e}" if isinstance(e, ValueError) else str(e))
    output = args.output or (args.paths[0] / "analysis")
    output.mkdir(parents=True, exist_ok=True)
    images = {} if args.no_plots else _plots(sweeps, loadgens, output)
    report = write_report(output / "report.md", baselines, sweeps, loadgens, images, skipped)
    if args.json:
        summaries = [*baselines, *sweeps, *loadgens]
        print(json.dumps({"runs": [to_json(s) for s in summaries], "skipped": skipped}, indent=2))
    else:
        _print(baselines, sweeps, loadgens, skipped)
        print(f"\nreport: {report}")
    for reason in skipped:
        print(f"sonic-bench: skipped: {reason}", file=sys.stderr)
    return EXIT_SKIPPED if skipped else 0


def _plots(sweeps, loadgens, output: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    if sweeps:
        images["throughput"] = throughput_plot(sweeps, output / "throughput.png")
    if loadgens:
        images["module_time"] = module_time_plot(loadgens, output / "module_time.png")
    for summary in [*sweeps, *loadgens]:
        path = server_series_plot(summary.run, output / f"server-{summary.run.run_id}.png")
        if path:
            images[f"server:{summary.run.run_id}"] = path
    for name, path in images.items():
        progress(f"wrote {path} ({name})")
    return images


def _print(baselines, sweeps, loadgens, skipped) -> None:
    for b in baselines:
        print(f"\nCPU-only baseline {b.run_id}:")
        print_table(BASELINE_HEADERS, baseline_rows(b))
    if sweeps:
        print("\nstandalone sweeps:")
        print_table(SWEEP_HEADERS, sweep_rows(sweeps))
        for s in sweeps:
            for note in s.run.notes:
                print(f"warning: {s.run.run_id}: {note}")
    if loadgens:
        print("\ngrid jobs (module time per event against users, paper's latency model):")
        print_table(LOADGEN_HEADERS, loadgen_rows(loadgens))
        for s in loadgens:
            print(f"\n{s.run.run_id} ({s.label}):")
            print_table(LEVEL_HEADERS, level_rows(s))
            for warning in s.warnings:
                print(f"warning: {s.run.run_id}: {warning}")
