"""sonic-bench check: thresholds, statistics, and real runs of the real server."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import server_config

from sonic_bench.cli import main
from sonic_bench.errors import SonicBenchError
from sonic_bench.model.repository import slowed_copy
from sonic_bench.regress.compare import Outcome, judge
from sonic_bench.regress.thresholds import Threshold, load_thresholds
from sonic_bench.triton.server import EmbeddedServer

THRESHOLDS = Path(__file__).resolve().parent.parent / "bench" / "thresholds.toml"
THROUGHPUT = Threshold("inferences_per_s", "higher", 0.10, "none", 0.05, None)


def test_noise_within_tolerance_passes():
    base = [100, 103, 98, 101, 99]
    run = [97, 101, 96, 99, 98]  # 2% lower: real maybe, but within tolerance
    assert judge(THROUGHPUT, 1, run, base).outcome is Outcome.PASS


def test_a_clear_drop_beyond_tolerance_is_a_regression():
    verdict = judge(THROUGHPUT, 1, [80, 82, 79, 81, 80], [100, 103, 98, 101, 99])
    assert verdict.outcome is Outcome.REGRESSION
    assert verdict.change == pytest.approx(-0.20, abs=0.02)
    assert verdict.high < 0 and verdict.p_value < 0.05


def test_a_big_but_insignificant_change_passes():
    # One wild trial on each side: the medians move, the ranks do not say "worse".
    verdict = judge(THROUGHPUT, 1, [100, 60, 101, 99, 140], [100, 99, 101, 98, 102])
    assert verdict.outcome is Outcome.PASS


def test_too_few_trials_cannot_be_judged():
    verdict = judge(THROUGHPUT, 1, [80, 81], [100, 101])
    assert verdict.outcome is Outcome.CANNOT_JUDGE and "too few trials" in verdict.reason


def test_the_committed_thresholds_are_valid():
    assert {t.metric for t in load_thresholds(THRESHOLDS)} >= {"inferences_per_s"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[metrics.speed]\ntolerance = 0.1\n", "unknown metric 'speed'"),
        ("[metrics.inferences_per_s]\n", "needs tolerance"),
        ("[metrics.inferences_per_s]\ntolerance = 0.1\nlevels = 'all'\n", "levels must be a list"),
        ("[metric.inferences_per_s]\ntolerance = 0.1\n", "unknown sections"),
        ("[metrics.inferences_per_s\n", "not valid TOML"),
    ],
)
def test_bad_thresholds_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(SonicBenchError, match=re.escape(message)):
        load_thresholds(path)


def smoke(url: str, results: Path, batch: str = "small", trials: int = 4) -> Path:
    """The CI smoke measurement (shortened): repeated trials with the in-process reference,
    four, the fewest `check` judges (the baseline has five: a 30% slower run's four trials
    all below its five give p = 1/126, one crossing 2/126).
    Windows start at 1.2 s, which hold the twenty answers a window needs to be judged
    (half-second ones were lengthened twice each trial, a third of the test's time).
    Windows on a shared machine may need more than eight to settle, and an unsettled
    level is INVALID, which check rightly cannot judge: room for sixteen."""
    arguments = (
        f"sweep --url {url} --dynamic-batching off --batch {batch} --concurrency 1 "
        f"--trials {trials} --percentiles 50 --reference --reference-seconds 1 --window 1.2 "
        f"--warmup 0.3 --max-windows 16 --metrics off --pool-batches 4 --results {results}"
    )
    code = main(arguments.split())
    assert code == 0
    return max(results.iterdir(), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def baseline_run(server, tmp_path_factory):
    return smoke(server.grpc_url, tmp_path_factory.mktemp("baseline"), trials=5)


def check(run: Path, baseline: Path, thresholds: Path = THRESHOLDS) -> int:
    return main(["check", str(run), "--baseline", str(baseline), "--thresholds", str(thresholds)])


def test_two_runs_of_unchanged_code_pass(server, baseline_run, tmp_path, capsys):
    rerun = smoke(server.grpc_url, tmp_path)
    capsys.readouterr()
    assert check(rerun, baseline_run) == 0, capsys.readouterr()  # the table, or why not


def test_an_exported_baseline_file_judges_the_same(server, baseline_run, tmp_path, capsys):
    exported = tmp_path / "baseline.json"
    assert main(["check", str(baseline_run), "--export-baseline", str(exported)]) == 0
    assert check(baseline_run, exported) == 0


def test_a_model_made_30_percent_slower_fails(repository, baseline_run, tmp_path, capsys):
    slow = slowed_copy(repository, tmp_path / "repo", slowdown=0.43)  # 1/1.43 = 0.7
    with EmbeddedServer(server_config(repository=slow)).start() as server:
        run = smoke(server.grpc_url, tmp_path / "results")
    capsys.readouterr()
    assert check(run, baseline_run) == 1
    assert "REGRESSION" in capsys.readouterr().out


def test_missing_baseline_cannot_compare(baseline_run, tmp_path, capsys):
    assert check(baseline_run, tmp_path / "nothing.json") == 2
    assert "nothing.json not found" in capsys.readouterr().err


def test_mismatched_batch_cannot_compare(server, baseline_run, tmp_path, capsys):
    # What it is decides, not how long it took: a setting of 64 patches a batch (the
    # large one's 2,300-patch requests made this the suite's slowest check test).
    other = smoke(server.grpc_url, tmp_path, batch="64", trials=1)
    capsys.readouterr()
    assert check(other, baseline_run) == 2
    err = capsys.readouterr().err
    assert "cannot compare" in err and "batch_size_setting: run 64, baseline 256" in err


def test_no_baseline_at_all_cannot_compare(baseline_run, capsys):
    assert main(["check", str(baseline_run)]) == 2
    assert "no --baseline" in capsys.readouterr().err


def test_copy_of_a_run_compares_equal(baseline_run, tmp_path):
    copy = shutil.copytree(baseline_run, tmp_path / baseline_run.name)
    assert check(copy, baseline_run) == 0


def _with_status(run: Path, folder: Path, status: str, warning: str) -> Path:
    copy = shutil.copytree(run, folder / run.name)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["status"] = status
    manifest["warnings"] = [*manifest["warnings"], warning]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("status", ["partial", "failed", "running"])
@pytest.mark.parametrize("side", ["run", "baseline"])
def test_only_complete_runs_are_judged(baseline_run, tmp_path, capsys, status, side):
    """A run whose requests failed has the baseline's very numbers here, and still is
    not passed: exit 2 with its status and reasons, unless --allow-partial."""
    broken = _with_status(
        baseline_run, tmp_path, status, "concurrency 1: 5000 of 9000 requests failed"
    )
    run, baseline = (broken, baseline_run) if side == "run" else (baseline_run, broken)
    capsys.readouterr()
    assert check(run, baseline) == 2
    err = capsys.readouterr().err
    assert f"is {status}" in err and "5000 of 9000 requests failed" in err
    assert "--allow-partial" in err
    allowed = ["check", str(run), "--baseline", str(baseline), "--thresholds", str(THRESHOLDS)]
    assert main([*allowed, "--allow-partial"]) == 0
    assert "judging anyway (--allow-partial)" in capsys.readouterr().err


def test_an_exported_baseline_keeps_its_status(baseline_run, tmp_path, capsys):
    broken = _with_status(baseline_run, tmp_path, "partial", "shared server")
    exported = tmp_path / "baseline.json"
    assert main(["check", str(broken), "--export-baseline", str(exported)]) == 0
    assert check(baseline_run, exported) == 2
    assert "is partial (" in capsys.readouterr().err
