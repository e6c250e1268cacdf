"""Distributed Locust: a master and workers started as separate processes, the usual way.

Workers are started with no sonic-bench option at all: whatever they run must be what
the master asked for, and the run folder must say what happened.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, read_events, read_requests, server_config

from sonic_bench.loadgen.context import build_context
from sonic_bench.loadgen.options import add_arguments, from_parsed
from sonic_bench.metrics.exposition import model_value, scrape
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.process import free_port, http_ok
from sonic_bench.results.store import read_run
from sonic_bench.triton.client import check_server
from sonic_bench.triton.server import EmbeddedServer

LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadgen" / "sonic.py")]
SHORT = ["--event-scale", "0.01", "--other-seconds", "20", "--step-seconds-per-user", "0",
         "--protocol", "http"]  # fmt: skip


@pytest.fixture(scope="module")
def calibration_server():
    with EmbeddedServer(server_config(models=(MODEL_CALIBRATION,))).start() as server:
        yield server


def _master(server, results: Path, port: int, *extra: str) -> list[str]:
    return [
        *LOCUST,
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--headless",
        "--host",
        f"http://{server.http_url}",
        "--model",
        MODEL_CALIBRATION,
        "--batch-size",
        "large",
        "--metrics",
        "off",
        "--results",
        str(results),
        "--only-summary",
        *SHORT,
        *extra,
    ]


def _worker(port: int) -> subprocess.Popen:
    command = [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _served(server) -> float:
    return model_value(
        scrape(server.metrics_url), "nv_inference_request_success", MODEL_CALIBRATION
    )


def _sizes_of_setting(server, setting: str) -> set[int]:
    """Every request size the master's plan sends (as each worker would build it)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = parser.parse_args(
        ["--url", server.http_url, "--protocol", "http", "--model", MODEL_CALIBRATION,
         "--batch", setting, "--event-scale", "0.01", "--other-seconds", "20",
         "--staircase", "off", "--metrics", "off"]
    )  # fmt: skip
    options = from_parsed(parsed)
    context = build_context(options, check_server(options.endpoint(), options.model))
    return {b.size for plan in context.plans for b in plan.batches}


def test_workers_run_what_the_master_asked_for(calibration_server, tmp_path):
    server, port = calibration_server, free_port()
    before = _served(server)
    # Each worker builds its workload (a simulated event) when the master's options come:
    # seconds on a busy 2-core machine, which the first step must outlast.
    master = subprocess.Popen(
        _master(server, tmp_path, port, "--expect-workers", "2", "--staircase", "2,4",
                "--step-seconds", "10"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    workers = [_worker(port), _worker(port)]
    try:
        _, err = master.communicate(timeout=180)
    finally:
        for w in workers:
            w.wait(timeout=30)
    assert master.returncode == 0, err[-3000:]
    (folder,) = tmp_path.iterdir()
    run = read_run(folder)
    requests = read_requests(folder)
    assert requests and all(r["ok"] == "1" for r in requests)
    assert {int(r["batch_size"]) for r in requests} <= _sizes_of_setting(server, "large")
    assert _served(server) - before == len(requests)  # reached the master's target, all
    workers_seen = run.manifest.load.parameters["workers"]
    assert len(workers_seen) == 2
    for settings in workers_seen.values():
        assert settings["batches"] == ["large"]
        assert settings["model"] == MODEL_CALIBRATION
        assert settings["url"] == server.http_url
    assert run.manifest.workload.batch_size_setting == 2300
    assert run.manifest.status == "complete", run.manifest.warnings


def test_a_late_and_a_killed_worker_are_said(calibration_server, tmp_path):
    server, port = calibration_server, free_port()
    master = subprocess.Popen(
        _master(server, tmp_path, port, "--expect-workers", "1", "--staircase", "2,2",
                "--step-seconds", "12"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    first = _worker(port)
    late = None
    try:
        deadline = time.monotonic() + 90
        while not list(tmp_path.glob("*/events.csv")):
            assert master.poll() is None and time.monotonic() < deadline, "no event recorded"
            time.sleep(0.2)
        late = _worker(port)
        time.sleep(4)
        os.kill(first.pid, signal.SIGKILL)
        master.communicate(timeout=180)
    finally:
        first.kill()
        if late is not None:
            late.wait(timeout=30)
    (folder,) = tmp_path.iterdir()
    run = read_run(folder)
    warnings = " | ".join(run.manifest.warnings)
    assert "joined" in warnings and "stopped reporting" in warnings, warnings
    assert run.manifest.status == "partial"
    assert read_events(folder)  # what the others recorded is kept


def _post(url: str, fields: dict[str, str]) -> None:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as reply:
        assert reply.status == 200


def test_a_run_started_from_the_web_ui_uses_its_fields(calibration_server, tmp_path):
    server, web = calibration_server, free_port()
    command = [
        *LOCUST, "--web-host", "127.0.0.1", "--web-port", str(web), "--metrics", "off",
        "--results", str(tmp_path), "--staircase", "off", *SHORT,
    ]  # fmt: skip
    ui = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{web}/"):
            assert ui.poll() is None and time.monotonic() < deadline, "web UI did not start"
            time.sleep(0.2)
        _post(
            f"http://127.0.0.1:{web}/swarm",
            {
                "user_count": "2",
                "spawn_rate": "10",
                "host": f"http://{server.http_url}",
                "model": MODEL_CALIBRATION,
                "batch": "large",
            },
        )
        deadline = time.monotonic() + 90
        while not list(tmp_path.glob("*/events.csv")):
            assert time.monotonic() < deadline, "the web run recorded no event"
            time.sleep(0.5)
        _post(f"http://127.0.0.1:{web}/stop", {})
        while not _finished(tmp_path):
            assert time.monotonic() < deadline, "the web run did not finish"
            time.sleep(0.5)
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.communicate(timeout=60)
    (folder,) = tmp_path.iterdir()
    run = read_run(folder)
    assert run.manifest.server.model == MODEL_CALIBRATION
    assert run.manifest.workload.batch_size_setting == 2300
    assert run.manifest.server.url == server.http_url
    requests = read_requests(folder)
    assert requests and {int(r["batch_size"]) for r in requests} <= _sizes_of_setting(
        server, "large"
    )


def _finished(results: Path) -> bool:
    return any(read_run(f).manifest.status != "running" for f in results.iterdir())


def _web_ui(results: Path, web: int, *extra: str) -> subprocess.Popen:
    command = [
        *LOCUST, "--web-port", str(web), "--metrics", "off", "--results", str(results), *SHORT,
        *extra,
    ]  # fmt: skip
    ui = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not http_ok(f"http://127.0.0.1:{web}/"):
        assert ui.poll() is None and time.monotonic() < deadline, "web UI did not start"
        time.sleep(0.2)
    return ui


def _swarm(web: int, fields: dict[str, str]) -> dict:
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{web}/swarm", data=data)
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@pytest.mark.parametrize(
    "fields",
    [
        {"batch": "foo"},
        {"event_scale": "-1"},
        {"event_scale": "nan"},
        {"step_seconds": "inf"},
        {"spawn_rate": "-1"},
        {"label": "../../x"},
        {"other_seconds": "ten"},
    ],
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
)
def test_the_web_ui_refuses_what_the_command_line_refuses(calibration_server, tmp_path, fields):
    web = free_port()
    ui = _web_ui(tmp_path / "results", web)
    try:
        form = {
            "user_count": "1",
            "spawn_rate": "1",
            "host": f"http://{calibration_server.http_url}",
        }
        answer = _swarm(web, {**form, **fields})
        time.sleep(1)  # a run that started anyway would have made its folder by now
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.communicate(timeout=60)
    assert answer["success"] is False and answer["message"].startswith("sonic-bench: ")
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_the_web_ui_listens_on_loopback_unless_asked(tmp_path):
    web = free_port()
    ui = _web_ui(tmp_path, web)
    try:
        listening = {
            c.laddr.ip
            for c in psutil.Process(ui.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == web
        }
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.communicate(timeout=60)
    assert listening == {"127.0.0.1"}


OTHER_LOCUSTFILE = """
from locust import User, task


class SomethingElse(User):
    @task
    def nothing(self):
        pass
"""


def test_a_worker_that_cannot_run_its_users_makes_the_step_say_so(calibration_server, tmp_path):
    """One worker runs another locustfile: the master's user class is not there, so its
    share of the users never runs. The step records the users that ran, the run is
    partial, and the warning says why."""
    server, port = calibration_server, free_port()
    other = tmp_path / "other.py"
    other.write_text(OTHER_LOCUSTFILE)
    results = tmp_path / "results"
    master = subprocess.Popen(
        _master(server, results, port, "--expect-workers", "2", "--staircase", "2",
                "--step-seconds", "8"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stranger = [sys.executable, "-m", "locust", "-f", str(other), "--worker",
                "--master-host", "127.0.0.1", "--master-port", str(port)]  # fmt: skip
    workers = [
        _worker(port),
        subprocess.Popen(stranger, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        master.communicate(timeout=180)
    finally:
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    (folder,) = results.iterdir()
    run = read_run(folder)
    assert run.manifest.status == "partial", run.manifest.warnings
    assert any("asked for 2 users and 1 ran" in w for w in run.manifest.warnings), (
        run.manifest.warnings,
        run.steps,
    )
    assert [int(s["concurrency"]) for s in run.steps] == [1]
