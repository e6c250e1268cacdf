"""A run never lies, also when the server is unfriendly.

Scripted fronts on loopback (`hostile.py`) pass every call to a real tritonserver except
the inference requests their script picks: those fail, get no answer, a byte a second,
or a dropped connection. The property checked each time: a run is `complete` only when
every request of every level was answered; otherwise it is `partial` with a warning that
counts what failed and why, the table and steps.csv say so, the exit code is non-zero,
and every wait ends within a bound the user set.
"""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from helpers import locust_command, quick_sweep, run_locust
from hostile import HostileGrpc, HostileHttp, always, every

from sonic_bench.cli import main
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.errors import SonicBenchError
from sonic_bench.model.emtrackmichel import INPUT_NAME
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.triton.client import AdminClient, check_server

pytestmark = pytest.mark.server


def _sweep_through(front, server, results: Path, protocol: str, *extra: str) -> list[str]:
    argv = quick_sweep(server, results, "--protocol", protocol, *extra)
    argv[argv.index("--url") + 1] = front.url
    return argv


def _run(tmp_path: Path) -> tuple[dict, list[dict]]:
    (folder,) = [p for p in tmp_path.iterdir() if (p / "manifest.json").exists()]
    manifest = json.loads((folder / "manifest.json").read_text())
    steps = []
    if (folder / "steps.csv").exists():
        with open(folder / "steps.csv") as f:
            steps = list(csv.DictReader(f))
    return manifest, steps


def _assert_partial_with_counted_failures(tmp_path, capsys, code, reason):
    out, err = capsys.readouterr()
    manifest, steps = _run(tmp_path)
    assert code == 1 and manifest["status"] == "partial"
    failed = [w for w in manifest["warnings"] if "requests failed" in w]
    assert failed and all(reason in w for w in failed), manifest["warnings"]
    assert sum(int(s["errors"]) for s in steps) > 0
    # The verdict says it too: every level with a failed request is INVALID for that.
    assert manifest["verdict"] == "INVALID" and "result: INVALID" in out
    for step in steps:
        if int(step["errors"]):
            assert step["verdict"] == "INVALID" and "failed" in step["verdict_reasons"], step
    assert any("failed" in r for r in manifest["verdict_reasons"])
    assert "errors" in out.splitlines()[2] and "status: partial" in out
    assert "FAILED" in err and "runs partial" in err


@pytest.mark.parametrize(
    ("protocol", "script", "reason"),
    [
        ("http", every(20, "fail"), "injected fault"),
        ("http", every(2, "fail"), "injected fault"),
        ("grpc", every(2, "fail"), "INTERNAL"),
        ("http", always("close"), "Error"),  # reset, broken pipe or closed: the next request
        ("http", every(3, "truncate"), "closed the connection"),
        ("grpc", every(3, "empty"), "no output tensor"),
    ],
    ids=[
        "http-1-in-20",
        "http-every-other",
        "grpc-internal",
        "http-close-after-answer",
        "http-cut-off-mid-answer",
        "grpc-ok-without-outputs",
    ],
)
def test_failed_requests_make_the_run_partial(server, tmp_path, capsys, protocol, script, reason):
    upstream = server.http_url if protocol == "http" else server.grpc_url
    front_type = HostileHttp if protocol == "http" else HostileGrpc
    with front_type(upstream, script) as front:
        code = main(_sweep_through(front, server, tmp_path, protocol, "--concurrency", "1,2"))
        assert set(front.faults) - {"ok"}
    _assert_partial_with_counted_failures(tmp_path, capsys, code, reason)


@pytest.mark.parametrize(
    ("protocol", "fault"),
    [("http", "silent"), ("http", "trickle"), ("grpc", "silent")],
)
def test_a_server_that_never_answers_ends_the_level_within_the_timeout(
    server, tmp_path, capsys, protocol, fault
):
    upstream = server.http_url if protocol == "http" else server.grpc_url
    front_type = HostileHttp if protocol == "http" else HostileGrpc
    with front_type(upstream, always(fault)) as front:
        started = time.monotonic()
        argv = _sweep_through(front, server, tmp_path, protocol, "--concurrency", "1,2")
        code = main([*argv, "--timeout", "1.5"])
        took = time.monotonic() - started
    err = capsys.readouterr().err
    manifest, steps = _run(tmp_path)
    assert code == 2 and took < 20, (code, took)
    assert manifest["status"] == "partial" and manifest["load"]["parameters"]["timeout_s"] == 1.5
    assert any("ended early" in w for w in manifest["warnings"])
    assert len(steps) == 1 and int(steps[0]["errors"]) >= 1  # the level measured is kept
    assert "error: b256-nodb concurrency 1:" in err and "Traceback" not in err


def test_admin_calls_wait_well_under_a_minute():
    """A request may queue minutes behind the others (the default timeout is 300 s); a
    health, metadata or statistics call queues behind nothing."""
    client = AdminClient(Endpoint("127.0.0.1:1"))
    client.is_server_live  # noqa: B018  (the wrapper that gives every call its deadline)
    assert client._defaults["is_server_live"]["client_timeout"] <= 30


class _Mute:
    """A peer that accepts connections, reads what comes and never says a word (a TCP
    listener behind a dead process, or a gRPC peer that never opens its window)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        self.listener.settimeout(0.05)
        held = []
        while not self.stop.is_set():
            try:
                held.append(self.listener.accept()[0])
            except TimeoutError:
                continue
        for sock in held:
            sock.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.listener.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_admin_calls_have_a_deadline(protocol):
    with _Mute() as mute:
        started = time.monotonic()
        endpoint = Endpoint(mute.url, protocol, timeout_s=1.0, connect_timeout_s=1.0)
        with pytest.raises(SonicBenchError, match="cannot reach Triton"):
            check_server(endpoint, MODEL_CALIBRATION)
        assert time.monotonic() - started < 10


def _other_client(url: str, stop: threading.Event) -> threading.Thread:
    """Another user of the same model, for as long as the test says (bounded by it)."""

    def load():
        client = grpcclient.InferenceServerClient(url)
        tensor = grpcclient.InferInput(INPUT_NAME, [16, 48, 48, 1], "FP32")
        tensor.set_data_from_numpy(np.zeros((16, 48, 48, 1), np.float32))
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            client.infer(MODEL_CALIBRATION, [tensor])
        client.close()

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    return thread


def test_another_client_on_the_server_is_detected(server, tmp_path, capsys):
    stop = threading.Event()
    other = _other_client(server.grpc_url, stop)
    try:
        code = main(quick_sweep(server, tmp_path, "--concurrency", "1"))
    finally:
        stop.set()
        other.join()
    manifest, _ = _run(tmp_path)
    assert code == 1 and manifest["status"] == "partial"
    assert any("shared server" in w for w in manifest["warnings"]), manifest["warnings"]
    assert "shared server" in capsys.readouterr().err


def test_alone_on_the_server_the_run_is_complete(server, tmp_path, capsys):
    """The same sweep with nobody else: complete, no failure, no shared-server warning."""
    code = main(quick_sweep(server, tmp_path, "--concurrency", "1,2"))
    manifest, steps = _run(tmp_path)
    assert code == 0 and manifest["status"] == "complete"
    assert not any("shared" in w or "failed" in w for w in manifest["warnings"])
    assert all(s["errors"] == "0" for s in steps)


def test_another_client_during_a_locust_run_is_detected(server, tmp_path):
    stop = threading.Event()
    other = _other_client(server.grpc_url, stop)
    try:
        command = locust_command(
            server, tmp_path, "--model", MODEL_CALIBRATION, "--metrics", "off",
            "--staircase", "2", "--step-seconds", "4", "--other-seconds", "20",
        )  # fmt: skip
        done = run_locust(command)
    finally:
        stop.set()
        other.join()
    manifest, _ = _run(tmp_path)
    assert manifest["status"] == "partial", done.stderr[-2000:]
    assert any("shared server" in w for w in manifest["warnings"]), manifest["warnings"]


def test_perf_analyzer_against_a_failing_server_is_not_complete(server, tmp_path, capsys):
    """NVIDIA's perf_analyzer as the engine, behind the same front: its failed requests
    make the run end early (perf_analyzer stops at them), never a complete run."""
    with HostileHttp(server.http_url, every(2, "fail")) as front:
        argv = _sweep_through(front, server, tmp_path, "http", "--concurrency", "1")
        code = main([*argv, "--engine", "perf_analyzer"])
    err = capsys.readouterr().err
    manifest, _ = _run(tmp_path)
    assert code != 0 and manifest["status"] in ("partial", "failed")
    assert "Traceback" not in err and "perf_analyzer" in err
