"""Every figure with its verdict: VALID or INVALID levels, the CPU-only reference,
whole sweeps repeated, the estimate of the time left, and `compare`."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from helpers import ROOT, quick_sweep
from scipy import stats

from sonic_bench.analysis.analyze import analyze
from sonic_bench.analysis.runs import load_run
from sonic_bench.analysis.summary import summarize_baseline, summarize_sweep
from sonic_bench.analysis.synthetic import sweep_run
from sonic_bench.cli import main
from sonic_bench.measure.cpu_only import Layout, default_layouts, measure_layout, parse_layouts
from sonic_bench.measure.level import MeasurementSettings
from sonic_bench.measure.verdict import (
    LevelEvidence,
    answers_for_a_bound,
    answers_needed,
    early_stopping_bound,
    judge_row,
)
from sonic_bench.model.emtrackmichel import model_bytes
from sonic_bench.results.manifest import new_manifest
from sonic_bench.results.schema import LoadInfo, ServerInfo, WorkloadInfo
from sonic_bench.results.store import RunWriter
from sonic_bench.runs.baseline import baseline_row
from sonic_bench.runs.progress import JobProgress, LevelTiming, PlannedLevel

SONIC = [sys.executable, "-m", "sonic_bench.cli"]


# --- the verdict of a level (pure) ------------------------------------------------------


def _evidence(answers: int, **changes) -> LevelEvidence:
    values = dict(duration_s=6.0, min_duration_s=6.0, answers=answers, errors=0, stable=True)
    return LevelEvidence(**(values | changes))


def _row(latencies: np.ndarray) -> dict:
    return {f"latency_ms_p{p}": float(np.percentile(latencies, p)) for p in (50, 90, 95, 99)}


def test_loadgen_s_sample_sizes_follow_from_the_same_formula_with_its_margin():
    # LoadGen: 99% confidence, margin (1 - p) / 20, rounded up to a multiple of 8,192.
    def loadgen(p: float) -> int:
        return -(-answers_needed(p, confidence=0.99, margin=0.05) // 8192) * 8192

    assert (loadgen(90), loadgen(99)) == (24_576, 270_336)
    assert [answers_needed(p) for p in (50, 90, 95, 99)] == [16, 139, 292, 1522]
    assert [answers_for_a_bound(p) for p in (90, 99)] == [29, 299]


def test_the_early_stopping_bound_covers_the_true_percentile_95_times_in_100():
    rng = np.random.default_rng(7)
    true_p99 = -np.log(0.01)  # exponential(1)
    covered = [early_stopping_bound(rng.exponential(size=400), 99) >= true_p99 for _ in range(2000)]
    assert 0.94 <= np.mean(covered) <= 0.99


def test_a_level_with_enough_answers_that_ran_clean_is_valid():
    latencies = np.random.default_rng(1).exponential(size=2000)
    row = judge_row(_row(latencies), latencies, _evidence(2000))
    assert row["verdict"] == "VALID" and row["verdict_reasons"] == ""
    assert row["latency_ms_p99"] == pytest.approx(np.percentile(latencies, 99))


def test_too_few_answers_for_the_p99_is_invalid_and_the_p99_is_its_bound():
    latencies = np.random.default_rng(2).exponential(size=500)
    row = judge_row(_row(latencies), latencies, _evidence(500))
    assert row["verdict"] == "INVALID"
    assert row["bounded_percentiles"] == "p99"  # 500 answers are enough for the p95
    assert row["latency_ms_p99"] == early_stopping_bound(latencies, 99)
    assert row["latency_ms_p99"] > np.percentile(latencies, 99)
    assert "p99 from 500 answers (1,522 needed)" in row["verdict_reasons"]
    assert row["latency_ms_p50"] == pytest.approx(np.percentile(latencies, 50))  # enough


def test_a_percentile_without_a_bound_is_emptied_and_said():
    latencies = np.arange(100.0)
    row = judge_row(_row(latencies), latencies, _evidence(100))
    assert row["latency_ms_p99"] is None and "no bound under 299 answers" in row["verdict_reasons"]


def test_percentiles_not_reported_are_not_judged():
    latencies = np.arange(200.0)
    row = judge_row(_row(latencies), latencies, _evidence(200), percentiles=(50, 90))
    assert row["verdict"] == "VALID" and row["latency_ms_p99"] is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"errors": 3}, "3 requests failed"),
        ({"stable": False}, "not stable"),
        ({"duration_s": 2.0}, "measured 2.0 s of its 6 s minimum"),
        ({"failure": "every request failed: x"}, "ended early: every request failed: x"),
        ({"shared_server": True}, "another client shared the server"),
    ],
)
def test_each_reason_makes_a_level_invalid(changes, reason):
    latencies = np.arange(20.0)
    row = judge_row(_row(latencies), latencies, _evidence(20, **changes), percentiles=(50,))
    assert row["verdict"] == "INVALID" and reason in row["verdict_reasons"]


def test_perf_analyzer_levels_without_request_latencies_cannot_be_bounded():
    row = judge_row({"latency_ms_p99": 5.0}, None, _evidence(50), percentiles=(99,))
    assert row["verdict"] == "INVALID" and "no per-request latencies" in row["verdict_reasons"]
    assert row["latency_ms_p99"] == 5.0


# --- the estimate of the time left (fake clock) -------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _true_level_s(batch: float, concurrency: int, timing: LevelTiming) -> tuple[float, float]:
    """A CPU server like this machine's: ~7,000 inf/s from concurrency 2, less at 1; a
    large-batch level needs an extra window now and then; stats settle ~1 s."""
    throughput = 4500.0 if concurrency == 1 else 7000.0 + 300 * np.log2(concurrency)
    windows = timing.windows + (1 if batch > 1000 and concurrency >= 4 else 0)
    window = max(timing.window_s, timing.window_requests / (throughput / batch))
    return timing.warmup_s + windows * window + 1.0, throughput


def test_the_estimate_learns_from_the_levels_and_is_within_20_percent_by_half_way():
    """The main job: batch ~242 then ~1,693, dynamic batching on and off, concurrency
    1-8. At half way only small batches were measured; the large ones last longer."""
    timing = LevelTiming(warmup_s=2.0, window_s=2.0, window_requests=50, windows=3)
    runs = [(0, 256, 242), (1, 256, 242), (2, 2300, 1693), (3, 2300, 1693)]
    planned = [PlannedLevel(run, hint, c) for run, hint, _ in runs for c in (1, 2, 4, 8)]
    truth = [_true_level_s(avg, c, timing) for _, _, avg in runs for c in (1, 2, 4, 8)]
    clock = FakeClock()
    progress = JobProgress(planned, timing, clock)
    for i, (seconds, throughput) in enumerate(truth):
        if i % 4 == 0:
            progress.run_begins(runs[i // 4][2])
        progress.level_begins()
        clock.now += seconds
        progress.finished_one(throughput)
        if i + 1 == len(truth) // 2:
            remaining = sum(s for s, _ in truth[i + 1 :])
            estimate = progress.left_s()
            # the old estimate (the average level so far) said less than a third of it
            naive = (clock.now - 1000.0) / (i + 1) * (len(truth) - i - 1)
            assert naive < 0.5 * remaining
            assert abs(estimate - remaining) <= 0.2 * remaining, (estimate, remaining)
    assert progress.left_s() == 0.0
    assert progress.line("x").startswith("[16/16] x")


def test_the_estimate_counts_down_inside_a_level():
    clock = FakeClock()
    timing = LevelTiming(2.0, 2.0, 0, 3)
    progress = JobProgress([PlannedLevel(0, 1, 1), PlannedLevel(0, 1, 2)], timing, clock)
    assert progress.left_s() is None and "estimating" in progress.line("a")
    progress.level_begins()
    clock.now += 8.0
    progress.finished_one(100.0)
    progress.level_begins()
    clock.now += 3.0
    assert progress.left_s() == pytest.approx(5.0)
    assert progress.line("b") == "[2/2] b · 0:11 elapsed · about 0:05 left"


# --- the CPU-only reference -----------------------------------------------------------


def test_layouts_parse_with_n_for_the_cores_and_refuse_nonsense():
    assert parse_layouts("1x1,Nx1,1xN", cores=4) == (Layout(1, 1), Layout(4, 1), Layout(1, 4))
    assert default_layouts(2) == (Layout(1, 1), Layout(2, 1), Layout(1, 2))
    assert default_layouts(1) == (Layout(1, 1),)
    for bad in ("0x1", "2", "axb", ""):
        with pytest.raises(Exception, match="--layouts"):
            parse_layouts(bad, cores=2)


FAST = MeasurementSettings(window_s=0.5, warmup_s=0.5, max_windows=6)


def _baseline_manifest(setting: int, average: float):
    return new_manifest(
        "baseline",
        "baseline",
        server=ServerInfo(None, "in-process", None, "EmTrackMichelId", "1"),
        workload=WorkloadInfo(1, [setting], average, 55_000),
        load=LoadInfo(mode="in-process", levels=(1.0,), step_seconds=2.0),
    )


def _write_baseline(folder: Path, results, settings) -> Path:
    with RunWriter(folder, _baseline_manifest(256, 242.0)) as writer:
        for i, result in enumerate(results):
            writer.append_step(baseline_row(i, result, settings, (50,)))
    return writer.folder


def _baseline_of(job: Path, layouts: list[tuple[int, int, float]]) -> Path:
    """A baseline at batch ~1,693 of (threads, processes, inf/s) layouts."""
    with RunWriter(job, _baseline_manifest(2300, 1693.0)) as writer:
        for step, (threads, processes, rate) in enumerate(layouts):
            writer.append_step(
                {"step": step, "concurrency": threads, "processes": processes,
                 "batch_size": 1693.0, "inferences_per_s": rate, "verdict": "VALID"}
            )  # fmt: skip
    return writer.folder


def test_the_reference_is_the_fastest_layout_when_one_is_planted_slower(patches, tmp_path):
    """Two layouts of one process: one runs the model in chunks of 4 patches (a slowed
    model: ~60x the session calls), the other as the served model does. The ratio a
    sweep is given is to the faster, whichever order they were measured in."""
    batches = [patches]
    model = model_bytes()
    slowed = measure_layout(model, batches, Layout(1, 1), FAST, session_batch=4)
    fair = measure_layout(model, batches, Layout(1, 2), FAST)
    assert slowed.inferences_per_s < 0.8 * fair.inferences_per_s
    assert fair.latencies_ms.size == fair.batches >= 3 * 20  # three windows of 20 answers
    assert fair.cpu_percent > 100  # two processes at work
    folder = _write_baseline(tmp_path, [slowed, fair], FAST)
    baseline = summarize_baseline(load_run(folder))
    best = baseline.best(242.0)
    assert (int(best.threads), int(best.processes)) == (1, 2)
    assert baseline.inferences_per_s(None, 250) == pytest.approx(fair.inferences_per_s, rel=1e-5)
    assert baseline.inferences_per_s(1, 250) == pytest.approx(slowed.inferences_per_s, rel=1e-5)
    assert set(baseline.table.verdict) <= {"VALID", "INVALID"}


def test_a_served_over_cpu_only_ratio_above_1_05_is_a_warning_that_says_why(tmp_path):
    sweep_folder = sweep_run(tmp_path / "jobs", 8000.0, 0.05)  # batch ~1,693
    folder = _baseline_of(tmp_path / "jobs", [(1, 1, 4000.0), (2, 1, 6000.0)])
    baseline = summarize_baseline(load_run(folder))
    summary = summarize_sweep(load_run(sweep_folder), [baseline])
    assert summary.baseline_ratio == pytest.approx(8000 / 6000)
    (warning,) = [w for w in summary.warnings if "may be unfair" in w]
    assert "served / CPU-only 1.33 at batch ~1693 is above 1.05" in warning
    assert "2 thread(s) x 1 process(es), 6,000 inf/s" in warning
    assert "it ran on another machine" in warning
    fair = summarize_sweep(load_run(sweep_run(tmp_path / "fair", 6100.0, 0.05)), [baseline])
    assert not [w for w in fair.warnings if "may be unfair" in w]


def test_jobs_analysed_together_compare_each_sweep_with_its_own_jobs_baseline(tmp_path):
    for job, rate in (("job1", 10_000.0), ("job2", 8_000.0)):
        _baseline_of(tmp_path / job, [(1, 2, rate)])
        sweep_run(tmp_path / job, 8000.0, 0.05)
    analysis = analyze([tmp_path / "job1", tmp_path / "job2"])
    ratios = {s.run.folder.parent.name: s.baseline_ratio for s in analysis.sweeps}
    assert ratios == {"job1": pytest.approx(0.8), "job2": pytest.approx(1.0)}


def test_sigkill_of_the_harness_during_the_baseline_leaves_no_worker(tmp_path):
    command = [*SONIC, "baseline", "--batch", "small", "--layouts", "1x2", "--window", "5",
               "--max-windows", "20", "--results", str(tmp_path)]  # fmt: skip
    harness = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while len(workers) < 2:
            assert harness.poll() is None and time.monotonic() < deadline, "no workers"
            workers = psutil.Process(harness.pid).children(recursive=True)
            time.sleep(0.1)
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait()
        _, alive = psutil.wait_procs(workers, timeout=20)
    finally:
        harness.kill()
    assert not alive, f"workers outlived the harness: {alive}"


@pytest.mark.parametrize(
    "argv",
    [
        ["baseline", "--window", "inf"],
        ["baseline", "--layouts", "0x1"],
        ["sweep", "--percentiles", "42"],
        ["sweep", "--repeat", "0"],
        ["sweep", "--trials", "0"],
    ],
)
def test_bad_verdict_options_are_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if line.strip()]) <= 2  # usage + error
    assert "Traceback" not in err


# --- on the real server: verdicts, repeats, compare, check ------------------------------


@pytest.fixture(scope="module")
def repeated(server, tmp_path_factory) -> Path:
    """Two whole sweeps of two levels of the zero-compute model, default percentiles."""
    results = tmp_path_factory.mktemp("repeated")
    argv = quick_sweep(server, results, "--concurrency", "1,2", "--repeat", "2")
    assert main(argv) == 0
    return results


def _runs(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if (p / "manifest.json").exists())


def _steps(folder: Path) -> list[dict]:
    with open(folder / "steps.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.server
def test_a_level_with_too_few_answers_for_its_p99_says_invalid_with_the_bound(repeated):
    for folder in _runs(repeated):
        requests = pd.read_csv(folder / "requests.csv.gz")
        for step in _steps(folder):
            answers = int(step["requests"])
            assert answers < 1522
            assert step["verdict"] == "INVALID" and "p99" in step["bounded_percentiles"]
            assert f"p99 from {answers} answers (1,522 needed)" in step["verdict_reasons"]
            start = pd.Timestamp(step["started_at"]).timestamp()
            end = pd.Timestamp(step["ended_at"]).timestamp()
            # steps.csv keeps the span to the millisecond: an answer at its edge may
            # fall either side
            mine = requests[(requests.step == int(step["step"])) & (requests.ok == 1)]
            mine = mine[(mine.t_recv >= start - 1e-3) & (mine.t_recv < end + 1e-3)]
            latencies = mine.latency_ms.to_numpy()
            assert abs(len(mine) - answers) <= 5
            if answers < 299:
                assert step["latency_ms_p99"] == ""  # no bound from so few
                continue
            p99 = float(step["latency_ms_p99"])
            # An answer's own latency (steps.csv keeps 6 digits, requests.csv 1 us).
            assert np.min(np.abs(latencies - p99)) <= 1.5e-3
            assert p99 >= np.percentile(latencies, 99)
            if len(mine) == answers:
                assert p99 == pytest.approx(early_stopping_bound(latencies, 99), abs=1e-3)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["verdict"] == "INVALID" and manifest["status"] == "complete"


@pytest.mark.server
def test_repeat_runs_whole_sweeps_and_analyze_gives_intervals(repeated):
    folders = _runs(repeated)
    assert [f.name.rsplit("-", 1)[1] for f in folders] == ["r1", "r2"]
    for i, folder in enumerate(folders, 1):
        parameters = json.loads((folder / "manifest.json").read_text())["load"]["parameters"]
        assert (parameters["repetition"], parameters["repetitions"]) == (i, 2)
    analysis = analyze([repeated])
    (config,) = analysis.repeated
    assert len(config.runs) == 2 and config.saturated.n == 2
    for level in config.levels:
        x = level.metrics["inferences_per_s"]
        values = [float(s["inferences_per_s"]) for f in folders for s in _steps(f)
                  if float(s["concurrency"]) == level.load]  # fmt: skip
        assert x.n == 2 and x.mean == pytest.approx(np.mean(values))
        # two repetitions may count the same answers in their fixed windows and tie: the
        # interval then closes on the mean, which is the truth, not a failure
        half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / np.sqrt(2)
        assert (x.low, x.high) == pytest.approx((x.mean - half, x.mean + half))
        assert x.low <= x.mean <= x.high and x.cv == pytest.approx(np.std(values, ddof=1) / x.mean)


@pytest.fixture(scope="module")
def long_run(server, tmp_path_factory) -> Path:
    """A sweep long enough (~4,000 answers a level) for the p99 to tell 30% apart."""
    results = tmp_path_factory.mktemp("long")
    argv = quick_sweep(server, results, "--concurrency", "1,2", "--window", "2")
    assert main(argv) == 0
    (folder,) = _runs(results)
    return folder


def _slowed_copy(folder: Path, target: Path, factor: float) -> Path:
    """The run as if everything took `factor` times as long: every time stretched from
    the run's start, every latency and every rate scaled."""
    shutil.copytree(folder, target)
    requests = pd.read_csv(target / "requests.csv.gz")
    origin = float(requests.t_send.min())
    for column in ("t_send", "t_recv"):
        requests[column] = origin + (requests[column] - origin) * factor
    requests["latency_ms"] *= factor
    with gzip.open(target / "requests.csv.gz", "wt") as f:
        requests.to_csv(f, index=False)
    steps = pd.read_csv(target / "steps.csv")
    for column in ("started_at", "ended_at"):
        unix = steps[column].map(lambda t: pd.Timestamp(t).timestamp())
        stretched = origin + (unix - origin) * factor
        steps[column] = [pd.Timestamp(t, unit="s", tz="UTC").isoformat() for t in stretched]
    for column in ("inferences_per_s", "requests_per_s"):
        steps[column] /= factor
    for column in [c for c in steps if c.startswith("latency_ms")]:
        steps[column] *= factor
    steps.to_csv(target / "steps.csv", index=False)
    return target


@pytest.mark.server
def test_compare_of_a_run_with_itself_is_not_significant_anywhere(repeated, capsys):
    folder = _runs(repeated)[0]
    assert (
        main(["compare", str(folder), str(folder), "--json", "--output", str(repeated / "c")]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["ratios"] and all(r["significance"] == "not significant" for r in out["ratios"])
    assert {r["load"] for r in out["ratios"]} == {1.0, 2.0}
    assert all(r["ratio"] == pytest.approx(1.0) for r in out["ratios"])
    assert Path(out["plot"]).exists()


@pytest.mark.server
def test_compare_against_a_30_percent_slowed_copy_is_significant_at_every_level(
    long_run, tmp_path, capsys
):
    folder = long_run
    slowed = _slowed_copy(folder, tmp_path / folder.name, 1.3)
    assert main(["compare", str(folder), str(slowed), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["load"] for r in out["ratios"]} == {1.0, 2.0}
    for r in out["ratios"]:
        assert r["significance"] == "significant", r
        expected = 1 / 1.3 if r["metric"] == "inferences_per_s" else 1.3
        assert r["ratio"] == pytest.approx(expected, rel=0.02)
        assert r["samples"] == ("blocks" if r["metric"] == "inferences_per_s" else "answers")
    main(["compare", str(folder), str(slowed)])
    text = capsys.readouterr().out
    assert "significant" in text and "from blocks, answers" in text


@pytest.mark.server
def test_check_refuses_invalid_runs_unless_allowed(repeated, capsys):
    a, b = _runs(repeated)
    thresholds = ROOT / "bench" / "thresholds.toml"
    code = main(["check", str(b), "--baseline", str(a), "--thresholds", str(thresholds)])
    assert code == 2
    err = capsys.readouterr().err
    assert "is INVALID (concurrency 1: " in err and "p99 from" in err
    assert "--allow-invalid" in err
    main(["check", str(b), "--baseline", str(a), "--thresholds", str(thresholds),
          "--allow-invalid"])  # fmt: skip
    err = capsys.readouterr().err
    assert "judging anyway (--allow-invalid)" in err and "judge VALID runs only" not in err
