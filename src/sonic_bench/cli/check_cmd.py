"""`sonic-bench check`: pass, regression or cannot-judge, for CI.

Exit codes: 0 pass, 1 regression, 2 could not judge (missing data, too few trials,
run and baseline not comparable). Never a silent pass.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sonic_bench.accuracy.drift import AccuracySummary
from sonic_bench.cli.common import print_table, progress
from sonic_bench.errors import SonicBenchError
from sonic_bench.regress.accuracy import judge_accuracy, load_accuracy_limits
from sonic_bench.regress.compare import Outcome, compare, mismatch, overall
from sonic_bench.regress.samples import from_run, load_samples
from sonic_bench.regress.thresholds import load_thresholds
from sonic_bench.results.store import read_manifest, read_run

DEFAULT_THRESHOLDS = Path("bench/thresholds.toml")


class CannotCompare(SonicBenchError):
    exit_code = int(Outcome.CANNOT_JUDGE)


def register(commands) -> None:
    parser = commands.add_parser("check", help="judge a run against a baseline (CI)")
    parser.add_argument("run_folder", type=Path, metavar="RUN", help="the run folder to judge")
    parser.add_argument("--baseline", type=Path, help="a run folder or an exported baseline file")
    parser.add_argument("--thresholds", type=Path, default=DEFAULT_THRESHOLDS)
    parser.add_argument(
        "--export-baseline", type=Path, metavar="FILE", help="write RUN as a baseline file"
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="judge runs or baselines that are not complete (failed requests, a shared "
        "server) instead of refusing them",
    )
    parser.add_argument(
        "--allow-invalid",
        action="store_true",
        help="judge runs or baselines with INVALID levels (too few answers for a "
        "percentile, not stable, too short) instead of refusing them",
    )
    parser.set_defaults(run=run)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _check_accuracy(args: argparse.Namespace, stored) -> int:
    """An accuracy run against the [accuracy] drift limits: no baseline needed."""
    if stored.accuracy is None:
        raise CannotCompare(f"{args.run_folder} has no accuracy.json: the run did not finish")
    if stored.manifest.status != "complete" and not args.allow_partial:
        reasons = "; ".join(stored.manifest.warnings) or stored.manifest.status
        raise CannotCompare(
            f"the run is {stored.manifest.status} ({reasons}): or give --allow-partial"
        )
    summary = AccuracySummary.from_dict(stored.accuracy)
    verdicts = judge_accuracy(summary, load_accuracy_limits(args.thresholds))
    rows = [
        (
            v.figure,
            "-" if v.value != v.value else f"{v.value:.3g}",
            "0" if v.limit is None else f"{v.limit:g}",
            "pass" if v.passed else "FAIL",
        )
        for v in verdicts
    ]
    print(f"{args.run_folder}: {summary.model} against {summary.reference}:")
    print_table(("figure", "value", "limit", "verdict"), rows)
    passed = all(v.passed for v in verdicts)
    print("PASS" if passed else "FAIL")
    return 0 if passed else int(Outcome.REGRESSION)


def run(args: argparse.Namespace) -> int:
    # An accuracy run is judged on its drift alone; only its manifest says which it is.
    folder = args.run_folder
    if folder.is_dir() and not args.export_baseline and read_manifest(folder).kind == "accuracy":
        return _check_accuracy(args, read_run(folder))
    if args.export_baseline:
        path = from_run(args.run_folder).export(args.export_baseline)
        print(f"wrote baseline {path} from {args.run_folder}")
        return 0
    if args.baseline is None:
        raise CannotCompare("no --baseline given: cannot compare (give a run or a baseline file)")
    thresholds = load_thresholds(args.thresholds)
    current = from_run(args.run_folder)
    try:
        baseline = load_samples(args.baseline)
    except SonicBenchError as e:
        raise CannotCompare(str(e)) from None
    for samples in (current, baseline):
        if (why := samples.incomplete()) is not None:
            if not args.allow_partial:
                raise CannotCompare(f"{why}: judge complete runs only, or give --allow-partial")
            progress(f"warning: judging anyway (--allow-partial): {why}")
    differences = mismatch(current, baseline)
    if differences:
        raise CannotCompare("cannot compare, the runs differ in " + "; ".join(differences))
    for samples in (current, baseline):
        if (why := samples.invalid()) is not None:
            if not args.allow_invalid:
                raise CannotCompare(f"{why}: judge VALID runs only, or give --allow-invalid")
            progress(f"warning: judging anyway (--allow-invalid): {why}")
    for difference in current.set_up_differences(baseline):
        progress(f"warning: run and baseline differ in {difference}")
    verdicts = compare(current, baseline, thresholds)
    rows = [
        (
            v.metric,
            "-" if v.level is None else f"{v.level:g}",
            _percent(v.change),
            "-" if v.low is None else f"[{v.low:+.1%}, {v.high:+.1%}]",
            "-" if v.p_value is None else f"{v.p_value:.3f}",
            f"{'-' if v.direction == 'higher' else '+'}{v.tolerance:.0%}",
            {Outcome.PASS: "pass", Outcome.REGRESSION: "REGRESSION"}.get(
                v.outcome, f"cannot judge: {v.reason}"
            ),
        )
        for v in verdicts
    ]
    print(f"{current.source} against {baseline.source}:")
    print_table(("metric", "level", "change", "95% CI", "p", "tolerance", "verdict"), rows)
    outcome = overall(verdicts)
    print({0: "PASS", 1: "REGRESSION", 2: "COULD NOT JUDGE"}[int(outcome)])
    return int(outcome)
