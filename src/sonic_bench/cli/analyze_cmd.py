"""`sonic-bench analyze`: saturation, knees, speedups, plots and a report from run folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sonic_bench.analysis.analyze import Analysis, analyze, write_outputs
from sonic_bench.analysis.report import (
    BASELINE_HEADERS,
    DEVICE_HEADERS,
    LEVEL_HEADERS,
    LOADGEN_HEADERS,
    PREDICTION_HEADERS,
    STORY_HEADERS,
    SWEEP_HEADERS,
    VARIANT_HEADERS,
    baseline_rows,
    budget_line,
    device_rows,
    level_rows,
    level_verdict_lines,
    loadgen_rows,
    prediction_inputs,
    prediction_rows,
    repeat_headers,
    repeat_lines,
    repeat_rows,
    story_rows,
    story_text,
    sweep_rows,
    variant_table_rows,
)
from sonic_bench.cli.common import print_table, progress

EXIT_SKIPPED = 3


def register(commands) -> None:
    parser = commands.add_parser("analyze", help="fit, compare and plot run folders")
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or folders of runs")
    parser.add_argument("--output", type=Path, help="report folder (default: PATH/analysis)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead")
    parser.add_argument("--no-plots", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    analysis = analyze(args.paths)
    output = args.output or (args.paths[0] / "analysis")
    report, images = write_outputs(analysis, output, with_plots=not args.no_plots)
    for name, path in images.items():
        progress(f"wrote {path} ({name})")
    if args.json:
        print(json.dumps(analysis.to_json(), indent=2))
    else:
        _print(analysis)
        print(f"\nreport: {report}")
    for reason in analysis.skipped:
        print(f"sonic-bench: skipped: {reason}", file=sys.stderr)
    return EXIT_SKIPPED if analysis.skipped else 0


def _print(analysis: Analysis) -> None:
    baselines, sweeps, loadgens = analysis.baselines, analysis.sweeps, analysis.loadgens
    for b in baselines:
        print(f"\nCPU-only baseline {b.run_id}:")
        print_table(BASELINE_HEADERS, baseline_rows(b))
    if sweeps:
        print("\nstandalone sweeps:")
        print_table(SWEEP_HEADERS, sweep_rows(sweeps))
        if devices := device_rows(sweeps):
            print("\nGPUs at saturation (Triton's GPU metrics):")
            print_table(DEVICE_HEADERS, devices)
        for s in sweeps:
            if s.budget:
                print(f"{s.run.run_id}: {budget_line(s.budget)}")
            for note in s.warnings:
                print(f"warning: {s.run.run_id}: {note}")
            for line in level_verdict_lines(s):
                print(line)
    if analysis.repeated:
        print("\nrepeated sweeps (mean, 95% t-interval, coefficient of variation):")
        print_table(repeat_headers(analysis.repeated), repeat_rows(analysis.repeated))
        for line in repeat_lines(analysis.repeated):
            print(line)
    if loadgens:
        print("\ngrid jobs (module time per event against users, paper's latency model):")
        print_table(LOADGEN_HEADERS, loadgen_rows(loadgens))
        predicted = prediction_rows(loadgens)
        if predicted:
            print("\npredicted from the sweep (and baseline) against measured:")
            print_table(PREDICTION_HEADERS, predicted)
            for s in loadgens:
                if s.prediction:
                    print(prediction_inputs(s))
                    for w in s.prediction.warnings:
                        print(f"warning: {s.run.run_id}: prediction: {w}")
        for s in loadgens:
            print(f"\n{s.run.run_id} ({s.label}):")
            print_table(LEVEL_HEADERS, level_rows(s))
            for warning in s.warnings:
                print(f"warning: {s.run.run_id}: {warning}")
    if analysis.accuracies:
        print("\naccuracy beside speed (served answers against FP32 in-process):")
        print_table(VARIANT_HEADERS, variant_table_rows(analysis.variants))
        for a in analysis.accuracies:
            for warning in a.run.manifest.warnings:
                print(f"warning: {a.run.run_id}: {warning}")
    if analysis.story:
        print("\nthe standalone story (the paper's Sec. 3.1-3.2: CPU-only and standalone server):")
        print_table(STORY_HEADERS, story_rows(analysis.story))
        for line in story_text(analysis.story):
            print(line)
