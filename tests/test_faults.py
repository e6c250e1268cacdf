"""Faults a user meets: each gets the documented behaviour, never a run that lies.

Real server, real Prometheus, real Locust; one test per case of what can go wrong.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import (
    LOCUST,
    ROOT,
    locust_command,
    only_run,
    quick_sweep,
    read_events,
    run_locust,
    server_config,
    wait_for_first_event,
)

from sonic_bench.cli import main
from sonic_bench.measure.level import LevelHooks, MeasurementSettings
from sonic_bench.metrics.recording import MetricsOptions
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.process import SHM_FOLDER, free_port
from sonic_bench.regress.thresholds import load_thresholds
from sonic_bench.results.store import read_run
from sonic_bench.runs.sweep import SweepPlan, configurations, levels, run_sweep
from sonic_bench.runs.target import Target
from sonic_bench.triton.server import EmbeddedServer

FIXTURES = ROOT / "tests" / "fixtures" / "schema-v1"
SONIC = [sys.executable, "-m", "sonic_bench.cli"]
QUICK = MeasurementSettings(window_s=1.0, warmup_s=0.5, max_windows=2)


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error" in line.lower()]


def _analyze_json(path: Path, tmp_path: Path, capsys) -> tuple[int, dict]:
    code = main(["analyze", str(path), "--json", "--no-plots", "--output", str(tmp_path / "a")])
    return code, json.loads(capsys.readouterr().out)


def _calibration_locust(server, results: Path, *extra: str) -> list[str]:
    """Locust against the zero-compute model, no metrics, events of ~1 s."""
    calibration = ("--model", MODEL_CALIBRATION, "--metrics", "off", "--other-seconds", "20")
    return locust_command(server, results, *calibration, *extra)


# 1. A Locust run whose server dies is partial, says why, and stops by itself.
def test_locust_run_whose_server_dies_stops_and_is_partial(tmp_path, capsys):
    server = EmbeddedServer(server_config(models=(MODEL_CALIBRATION,))).start()
    command = _calibration_locust(
        server,
        tmp_path,
        "--staircase",
        "2,2",
        "--step-seconds",
        "120",  # the staircase alone would take 4 minutes
        "--max-retries",
        "0",
        "--max-failed-events",
        "3",
    )
    locust = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_first_event(locust, tmp_path)
        killed = time.monotonic()
        os.killpg(server.pid, signal.SIGKILL)
        locust.communicate(timeout=90)
        stopped_after = time.monotonic() - killed
    finally:
        server.stop()
        locust.kill()
    assert locust.returncode != 0
    assert stopped_after < 60, "the staircase went on against a dead server"
    (folder,) = tmp_path.glob("*-loadgen-*")
    run = read_run(folder)
    assert run.manifest.status == "partial"
    assert any("events all failed" in w for w in run.manifest.warnings)
    assert any("requests failed" in w for w in run.manifest.warnings)
    events = read_events(folder)
    assert any(int(e["failed_requests"]) > 0 for e in events)  # failed events are recorded
    _, report = _analyze_json(folder, tmp_path, capsys)
    (summary,) = report["runs"] or [{"warnings": report["skipped"]}]
    assert any("failed" in w for w in summary["warnings"])


# 2. Concurrency lists that cannot be meant: one line, exit 2, no server started.
@pytest.mark.parametrize("levels_text", ["0-8", "5-1", "10:1:1", "1:5:0"])
def test_bad_concurrency_is_one_clear_error(levels_text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--concurrency", levels_text])
    assert exit_info.value.code == 2
    assert levels_text in capsys.readouterr().err


SERVERS = ("tritonserver", "triton_python_backend_stub", "prometheus")


def _children_named(root: psutil.Process, *names: str) -> list[psutil.Process]:
    return [p for p in root.children(recursive=True) if p.name() in names]


# 3, 4, 11. SIGKILL of the harness: server, stubs, Prometheus, shared memory (the
# server's and the harness's own) and temp folders go with it; the run left `running` is
# reported as interrupted.
def test_sigkill_of_the_harness_leaves_nothing_behind(tmp_path, capsys):
    before_tmp = set(Path("/tmp").glob("sonic-*"))
    http, grpc, metrics, prometheus = (free_port() for _ in range(4))
    command = [
        *SONIC,
        "sweep",
        "--calibration",
        "--batch",
        "small",
        "--shared-memory",  # the harness's own regions, besides the server's
        "--concurrency",
        "1-64",  # seven levels: the harness is killed after the first
        "--window",
        "1",
        "--max-windows",
        "2",
        "--warmup",
        "0.5",
        "--metrics",
        "prometheus",
        "--prometheus-port",
        str(prometheus),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--results",
        str(tmp_path),
    ]
    harness = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*/steps.csv")):
            assert harness.poll() is None and time.monotonic() < deadline, "the sweep did not start"
            time.sleep(0.2)
        children = psutil.Process(harness.pid).children(recursive=True)
        owned = [p for p in children if p.name() in SERVERS]
        assert {p.name() for p in owned} >= {"tritonserver", "prometheus"}
        reapers = [p for p in children if "sonic_bench.reaper" in " ".join(p.cmdline())]
        assert len(reapers) == 3  # tritonserver, Prometheus, the harness's own regions
        regions = list(SHM_FOLDER.glob(f"sonic-triton-{harness.pid}-*"))
        own_regions = list(SHM_FOLDER.glob(f"sonic-shm-{harness.pid}-*"))
        assert regions and own_regions  # the inputs (workers' outputs come and go)
        regions += own_regions
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait()
        _, alive = psutil.wait_procs(owned + reapers, timeout=30)
    finally:
        harness.kill()
    assert not alive, f"still running after the harness died: {[p.name() for p in alive]}"
    assert not any(r.exists() for r in regions)
    assert set(Path("/tmp").glob("sonic-*")) <= before_tmp
    (folder,) = tmp_path.glob("*-sweep-*")
    assert read_run(folder).manifest.status == "running"
    _, report = _analyze_json(tmp_path, tmp_path, capsys)
    (summary,) = report["runs"]
    assert summary["status"] == "interrupted"
    assert any("never finished" in w for w in summary["warnings"])


def test_sigkill_of_the_harness_with_perf_analyzer_leaves_no_temp_folder(server, tmp_path):
    """perf_analyzer's input data and reports live in a temp folder of the harness: a
    reaper removes it when the harness is killed mid-level, and perf_analyzer dies too."""
    before = set(Path("/tmp").glob("sonic-pa-*"))
    command = [
        *SONIC, "sweep", "--url", server.grpc_url, "--calibration", "--batch", "small",
        "--engine", "perf_analyzer", "--concurrency", "1,2", "--window", "1",
        "--metrics", "off", "--results", str(tmp_path),
    ]  # fmt: skip
    harness = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not _children_named(psutil.Process(harness.pid), "perf_analyzer"):
            if harness.poll() is not None:
                pytest.fail(f"the sweep ended first: {harness.stderr.read().decode()[-800:]}")
            assert time.monotonic() < deadline, "no perf_analyzer"
            time.sleep(0.1)
        ours = set(Path("/tmp").glob("sonic-pa-*")) - before
        assert ours, "perf_analyzer's folder is not where it was looked for"
        children = psutil.Process(harness.pid).children(recursive=True)
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
    finally:
        harness.kill()
    assert not alive, f"still running after the harness died: {[p.name() for p in alive]}"
    assert not any(folder.exists() for folder in ours)


def test_stopped_server_removes_its_shared_memory_and_temp_folder():
    server = EmbeddedServer(server_config(models=(MODEL_CALIBRATION,))).start()
    regions = list(SHM_FOLDER.glob(f"{server.shm_prefix}*"))
    folder = server.temp_folder
    assert regions and folder is not None and folder.exists()
    server.stop()
    assert not any(r.exists() for r in regions)
    assert not folder.exists()


# 5. Metrics from a URL where no Triton answers, or from another server: the run says so.
def test_metrics_nobody_serves_are_reported_not_ok(server, tmp_path, capsys):
    code = main(
        [
            "sweep",
            "--url",
            server.grpc_url,
            "--calibration",
            "--batch",
            "small",
            "--concurrency",
            "1",
            "--window",
            "1",
            "--warmup",
            "0.5",
            "--max-windows",
            "2",
            "--metrics",
            "direct",
            "--metrics-url",
            f"http://127.0.0.1:{free_port()}/metrics",
            "--results",
            str(tmp_path),
        ]
    )
    assert code == 0
    (folder,) = tmp_path.iterdir()
    manifest = read_run(folder).manifest
    assert manifest.metrics.status == "no data"
    assert any("no server metrics" in w for w in manifest.warnings)


def test_metrics_of_another_server_are_flagged(server, tmp_path):
    other = EmbeddedServer(server_config(models=(MODEL_CALIBRATION,))).start()
    try:
        plan = SweepPlan(
            configurations([256], "off", model=MODEL_CALIBRATION),  # measured on `server` ...
            levels([2]),
            QUICK,
            pool_batches=4,
            results=tmp_path,
        )
        target = Target(url=server.grpc_url, metrics_url=other.metrics_url)  # ... not `other`
        (sweep,) = run_sweep(plan, target, MetricsOptions(mode="direct"))
    finally:
        other.stop()
    manifest = read_run(sweep.folder).manifest
    assert manifest.metrics.status == "mismatch"
    assert any("not this server's" in w for w in manifest.warnings)


# 6. Prometheus stopped mid-run: what it had served is kept, the run falls back.
def test_prometheus_stopped_mid_run_keeps_what_it_served(server, tmp_path):
    me = psutil.Process()
    sweeps_started = []

    def kill_prometheus(message: str) -> None:
        if message.startswith("sweep "):
            sweeps_started.append(message)
            if len(sweeps_started) == 2:  # the second configuration starts: Prometheus dies
                for p in _children_named(me, "prometheus"):
                    p.kill()

    plan = SweepPlan(
        configurations([256, 512], "off", model=MODEL_CALIBRATION),
        levels([1]),
        MeasurementSettings(window_s=2.0, warmup_s=0.5, max_windows=2),
        pool_batches=4,
        results=tmp_path,
    )
    hooks = LevelHooks(on_progress=[kill_prometheus])
    options = MetricsOptions(mode="prometheus", prometheus_port=free_port())
    first, second = run_sweep(
        plan, Target(url=server.grpc_url, metrics_url=server.metrics_url), options, hooks
    )
    steps = read_run(first.folder).steps
    assert steps[0]["cpu_utilization"] != ""  # the level's server values were kept
    with gzip.open(first.folder / "metrics.csv.gz", "rt") as f:
        assert len(f.readlines()) > 10
    warnings = read_run(second.folder).manifest.warnings
    assert any("directly" in w for w in warnings), warnings


# 7. Results that other tools, older versions or a cut-off copy wrote.
def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _copy_fixture(tmp_path: Path, kind: str) -> Path:
    (source,) = FIXTURES.glob(f"*-old-{kind}*")
    return Path(shutil.copytree(source, tmp_path / "runs" / source.name))


def test_steps_missing_a_needed_column_skips_that_run_with_one_line(tmp_path, capsys):
    folder = _copy_fixture(tmp_path, "sweep")
    _copy_fixture(tmp_path, "baseline")
    path = folder / "steps.csv"
    rows = _read_csv(path)
    with open(path, "w", newline="") as f:
        columns = [c for c in rows[0] if c != "inferences_per_s"]
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    code, report = _analyze_json(tmp_path / "runs", tmp_path, capsys)
    assert code == 3
    assert [r["kind"] for r in report["runs"]] == ["baseline"]
    assert "inferences_per_s" in report["skipped"][0]


def test_loadgen_events_without_failed_requests_column_analyse(tmp_path, capsys):
    folder = _copy_fixture(tmp_path, "loadgen")
    path = folder / "events.csv"
    rows = _read_csv(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in rows[0] if c != "failed_requests"])
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != "failed_requests"} for r in rows)
    code, report = _analyze_json(folder, tmp_path, capsys)
    assert code == 0
    assert report["runs"][0]["saturation"]["flat_module_s"] > 0


def test_truncated_requests_file_is_said(tmp_path, capsys):
    folder = _copy_fixture(tmp_path, "sweep")
    path = folder / "requests.csv.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _, report = _analyze_json(folder, tmp_path, capsys)
    assert any("truncated" in w for w in report["runs"][0]["warnings"])


# 8. A typo in [defaults] of the thresholds would silently change every verdict.
@pytest.mark.parametrize("typo", ["normalise", "alpah"])
def test_thresholds_defaults_typo_is_an_error(tmp_path, typo):
    path = tmp_path / "thresholds.toml"
    path.write_text(
        f'[defaults]\n{typo} = "reference"\n\n'
        '[metrics.inferences_per_s]\ndirection = "higher"\ntolerance = 0.1\n'
    )
    with pytest.raises(Exception, match=typo):
        load_thresholds(path)


# 9. Bad input everywhere: one line, the documented exit code.
def test_check_against_a_baseline_missing_fields_cannot_judge(tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"format": "sonic-bench-baseline", "source": "x"}))
    (run,) = FIXTURES.glob("*-old-sweep-*")
    code = main(["check", str(run), "--baseline", str(baseline)])
    assert code == 2
    assert "identity" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["workload", "generate", "--events", "1", "--output", "/nonexistent/folder/w.sbwl"],
        ["sweep", "--window", "0"],
        ["sweep", "--window", "-1"],
        ["predict", "--t-cpu", "-5"],
        ["predict", "--t-cpu", "nan"],
        ["predict", "--link-gbps", "0"],
        ["predict", "--p", "2"],
        ["sweep", "--pool-batches", "0"],
        ["sweep", "--pool-batches", "-1"],
        ["sweep", "--seed", "-1"],
        ["sweep", "--window", "inf"],
        ["sweep", "--warmup", "inf"],
        ["sweep", "--warmup", "nan"],
        ["sweep", "--timeout", "0"],
        ["sweep", "--timeout", "nan"],
        ["sweep", "--connect-timeout", "inf"],
        ["sweep", "--rate", "inf"],
        ["sweep", "--label", "../../x"],
        ["sweep", "--label", "a/b"],
        ["sweep", "--url", "127.0.0.1:70000"],
        ["sweep", "--url", "127.0.0.1:port"],
        ["sweep", "--url", "ftp://127.0.0.1:8001"],
        ["sweep", "--url", "http://127.0.0.1:8001/v2/models"],
        ["baseline", "--warmup", "inf"],
        ["baseline", "--label", "../x"],
        ["analyze", str(FIXTURES), "--output", str(ROOT / "pyproject.toml")],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "Traceback" not in err


# 10. The first Locust step runs its full hold: set-up time is not taken from it.
def test_first_locust_step_is_not_shortened_by_set_up(server, tmp_path):
    command = _calibration_locust(
        server,
        tmp_path,
        "--staircase",
        "2",
        "--step-seconds",
        "6",
    )
    done = run_locust(command, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = tmp_path.iterdir()
    (step,) = read_run(folder).steps
    span = _seconds(step["ended_at"]) - _seconds(step["started_at"])
    assert span >= 5.5
    assert int(step["requests"]) > 0


def _seconds(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# 12. What a user pastes as --url, and header names in any case: accepted as meant.
def test_a_url_with_a_scheme_and_an_uppercase_header_work(server, tmp_path, capsys):
    argv = quick_sweep(server, tmp_path, "--concurrency", "1")
    argv[argv.index("--url") + 1] = f"http://{server.grpc_url}/"
    assert main([*argv, "--header", "Authorization:Bearer token"]) == 0
    manifest = read_run(only_run(tmp_path)).manifest
    assert manifest.server.url == server.grpc_url and manifest.status == "complete"


def test_tls_to_a_plain_server_is_one_line(server, tmp_path, capsys):
    argv = quick_sweep(server, tmp_path, "--concurrency", "1", "--protocol", "http")
    argv[argv.index("--url") + 1] = f"https://{server.http_url}"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "cannot reach Triton" in err and "Traceback" not in err


def test_too_few_open_files_for_the_load_is_one_line(tmp_path):
    """ulimit -n 256 and 400 connections asked for: said before anything starts."""

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    command = [*SONIC, "sweep", "--concurrency", "400", "--results", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, preexec_fn=low_limit, timeout=60
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ulimit -n" in done.stderr and len(_error_lines(done.stderr)) == 1


@pytest.mark.parametrize(
    "bad",
    [
        ["--step-seconds", "nan"],
        ["--event-scale", "-1"],
        ["--other-seconds", "inf"],
        ["--batch-size", "foo"],
        ["--label", "../../x"],
        ["--url", "127.0.0.1:70000"],
        ["--seed", "-1"],
        ["--model", "cnn_emtrkmichel_1,cnn_emtrkmichel_int8"],  # a sweep's list, not a job's
    ],
    ids=lambda bad: "=".join(bad),
)
def test_bad_locust_options_are_one_line_and_exit_2(tmp_path, bad):
    command = [*LOCUST, "--url", "127.0.0.1:1", "--results", str(tmp_path), "-t", "5", *bad]
    done = run_locust(command, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if "ERROR" in line]) == 1
    assert not list(tmp_path.iterdir())


def test_infinite_values_in_steps_are_a_warning_never_a_figure(tmp_path, capsys):
    folder = _copy_fixture(tmp_path, "sweep")
    path = folder / "steps.csv"
    rows = _read_csv(path)
    rows[-1]["inferences_per_s"] = "inf"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, report = _analyze_json(tmp_path / "runs", tmp_path, capsys)
    assert code == 0
    (run,) = report["runs"]
    assert any("infinite values in inferences_per_s" in w for w in run["warnings"])
    text = (tmp_path / "a" / "report.md").read_text()
    assert "inf inf/s" not in text and "max inf/s: inf" not in text.lower()
    assert "infinite values" in text
