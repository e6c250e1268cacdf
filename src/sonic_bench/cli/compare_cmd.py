"""`sonic-bench compare A B`: B against A, level by level, significant or not."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sonic_bench.analysis.compare import Comparison, compare_runs, comparison_plot
from sonic_bench.cli.common import print_table, progress
from sonic_bench.errors import SonicBenchError


def register(commands) -> None:
    parser = commands.add_parser(
        "compare", help="B against A (runs or job folders): ratios, intervals, significance"
    )
    parser.add_argument("a", type=Path, metavar="A", help="a run folder or a folder of runs")
    parser.add_argument("b", type=Path, metavar="B", help="a run folder or a folder of runs")
    parser.add_argument("--output", type=Path, help="where the plot goes (default: B/compare)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in (args.a, args.b):
        if not path.is_dir():
            raise SonicBenchError(f"{path}: no such folder (give a run folder or a job folder)")
    comparison = compare_runs(args.a, args.b)
    output = args.output or (args.b / "compare")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SonicBenchError(f"cannot make {output}: {e.strerror}") from None
    plot = comparison_plot(comparison, output / "compare.png")
    progress(f"wrote {plot}")
    if args.json:
        print(json.dumps({**comparison.as_json(), "plot": str(plot)}, indent=2))
    else:
        _print(comparison)
    return 0


def _print(c: Comparison) -> None:
    print(f"A: {c.a}\nB: {c.b}")
    rows = [
        (
            r.configuration,
            f"{r.load:g}",
            r.metric,
            r.a,
            r.b,
            f"{r.ratio:.3f}",
            f"[{r.low:.3f}, {r.high:.3f}]",
            r.samples,
            r.word,
        )
        for r in c.ratios
    ]
    print_table(
        ("configuration", "load", "metric", "A", "B", "B / A", "95% bootstrap", "from", "verdict"),
        rows,
    )
    if any(r.samples != "runs" for r in c.ratios):
        print(
            "from blocks, answers: time blocks and answers inside each run, without the "
            "run-to-run variation; repeat the sweeps (--repeat 3) for intervals across runs"
        )
    for line in c.unmatched:
        print(f"not compared: {line}")
    if c.provenance:
        print("the two sides differ in:")
        for line in c.provenance:
            print(f"  {line}")
    else:
        print("the two sides' set-ups are alike (versions, CPU, model config, git state)")
