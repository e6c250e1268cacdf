"""Locust users as grid jobs, against the real embedded server (real Locust, headless)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from helpers import (
    ROOT,
    locust_command,
    only_run,
    read_events,
    read_requests,
    run_locust,
    server_config,
)

from sonic_bench.metrics.exposition import model_value, scrape
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.results.store import read_run
from sonic_bench.triton.server import EmbeddedServer


def test_short_run_writes_everything_and_matches_tritons_count(server, tmp_path):
    model = MODEL_NO_DYNAMIC_BATCHING
    before = model_value(scrape(server.metrics_url), "nv_inference_count", model)
    done = run_locust(
        locust_command(
            server, tmp_path, "--model", model, "--staircase", "2,3", "--step-seconds", "6"
        )
    )
    assert done.returncode == 0, done.stderr[-2000:]
    after = model_value(scrape(server.metrics_url), "nv_inference_count", model)
    folder = only_run(tmp_path)
    run = read_run(folder)
    assert run.manifest.kind == "loadgen" and run.manifest.status == "complete"
    assert [int(s["concurrency"]) for s in run.steps] == [2, 3]
    requests = read_requests(folder)
    assert requests and all(r["ok"] == "1" for r in requests)
    assert after - before == sum(int(r["batch_size"]) for r in requests)
    events = read_events(folder)
    assert events and {e["users"] for e in events} <= {"2", "3"}
    assert run.manifest.metrics.source in ("prometheus", "direct")
    assert (folder / "metrics.csv.gz").exists()
    _module_time_is_its_requests(events, requests)


def _module_time_is_its_requests(events: list[dict], requests: list[dict]) -> None:
    checked = 0
    for event in events:
        t_start, other = float(event["t_start"]), float(event["other_s"])
        t_end = t_start + float(event["total_s"])
        mine = [
            r
            for r in requests
            if r["worker"] == event["worker"] and t_start + other <= float(r["t_send"]) <= t_end
        ]
        assert len(mine) == int(event["requests"])
        first_send = min(float(r["t_send"]) for r in mine)
        latencies = sum(float(r["latency_ms"]) for r in mine) / 1000
        preprocess = first_send - (t_start + other)
        overhead = float(event["module_s"]) - preprocess - latencies
        # What is left is the client's own time between requests: small, never negative.
        assert -0.005 <= overhead <= 0.005 * len(mine) + 0.01
        checked += 1
    assert checked > 0


def test_master_with_two_worker_processes_writes_one_merged_run(server, tmp_path):
    extra = ["--model", MODEL_CALIBRATION, "--processes", "2", "--staircase", "4"]
    done = run_locust(locust_command(server, tmp_path, *extra, "--step-seconds", "8"))
    assert done.returncode == 0, done.stderr[-2000:]
    folder = only_run(tmp_path)
    processes = {e["worker"].split("/")[0] for e in read_events(folder)}
    assert len(processes) == 2  # both worker processes' events in the one folder
    assert read_run(folder).manifest.status == "complete"


def test_server_stopped_mid_run_records_failures_and_keeps_the_folder(repository, tmp_path):
    server = EmbeddedServer(server_config()).start()
    command = locust_command(
        server,
        tmp_path,
        "--model",
        MODEL_CALIBRATION,
        "--staircase",
        "2",
        "--step-seconds",
        "12",
        "--max-retries",
        "2",
    )
    locust = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*/events.csv")) and locust.poll() is None:
            assert time.monotonic() < deadline, "no event was recorded"
            time.sleep(0.1)
        os.killpg(server.pid, signal.SIGKILL)
        locust.communicate(timeout=120)
    finally:
        server.stop()
        locust.kill()
    folder = only_run(tmp_path)
    run = read_run(folder)
    assert run.manifest.status in ("complete", "partial")
    requests = read_requests(folder)
    assert any(r["ok"] == "1" for r in requests)
    failures = [r for r in requests if r["ok"] == "0"]
    assert failures and all(r["error"] for r in failures)
    assert read_events(folder)  # events finished before the stop are kept


@pytest.mark.parametrize("bad", [["--event-scale", "2"], ["--staircase", "1,x"]])
def test_bad_options_are_one_clear_error(server, tmp_path, bad):
    done = run_locust(locust_command(server, tmp_path, *bad), timeout=60)
    assert done.returncode != 0
    assert "sonic-bench:" in done.stderr
    assert not any(tmp_path.iterdir())


def test_staircase_off_ends_at_run_time_over_grpc(server, tmp_path):
    """With --staircase off, -u/-r/-t drive the test (headless Locust would otherwise
    wait for the shape forever); the users' gRPC goes through the engine's own HTTP/2
    connection under gevent."""
    command = locust_command(
        server, tmp_path, "--model", MODEL_CALIBRATION, "--staircase", "off",
        "-u", "2", "-r", "2", "-t", "4s", "--protocol", "grpc", "--url", server.grpc_url,
    )  # fmt: skip
    done = run_locust(command, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = only_run(tmp_path)
    assert read_run(folder).manifest.status == "complete"
    requests = read_requests(folder)
    assert requests and all(r["ok"] == "1" for r in requests)
