"""Issue 8's figures: how often the check cries wolf, and what it catches.

Runs the CI smoke measurement against the unchanged embedded model `--repeats` times
(each judged against the first), then against copies of the model made 10%, 20% and
30% slower (the `slowdown` parameter of the model repository), and counts verdicts.

    .venv/bin/python bench/regression_power.py [--repeats 10] [--slow-repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

from common import ROOT, embedded_server

sys.path.insert(0, str(ROOT / "tests"))
from test_check import check, slowed_repository, smoke

REPOSITORY = ROOT / "model_repository"


def quiet_check(run: Path, baseline: Path) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return check(run, baseline)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--slow-repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with embedded_server() as server:
            baseline = smoke(server.grpc_url, root / "baseline")
            verdicts = [
                quiet_check(smoke(server.grpc_url, root / f"same{i}"), baseline)
                for i in range(args.repeats)
            ]
        alarms = sum(v == 1 for v in verdicts)
        print(
            f"unchanged: {alarms} false alarms in {len(verdicts)} ({alarms / len(verdicts):.0%}),"
            f" {sum(v == 2 for v in verdicts)} could not judge"
        )
        for percent in (10, 20, 30):
            slowdown = round(1 / (1 - percent / 100) - 1, 3)
            repo = slowed_repository(root / f"repo{percent}", REPOSITORY, slowdown)
            with embedded_server(repo) as server:
                caught = [
                    quiet_check(smoke(server.grpc_url, root / f"slow{percent}-{i}"), baseline)
                    for i in range(args.slow_repeats)
                ]
            print(f"{percent}% slower model: caught {sum(v == 1 for v in caught)} of {len(caught)}")


if __name__ == "__main__":
    main()
