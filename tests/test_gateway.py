"""Through a real gateway: Debian's nginx in front of embedded tritonserver replicas (TLS,
a bearer token, least-connection balancing, a rate limiter), as `--replicas N --gateway`
starts them. What must hold: the run's counts equal the sum of every replica's Triton
counter, each replica's part is shown, a call the gateway refuses is a failed request
counted apart as rejected, a replica stopped mid-level is said to be, and nothing is left
running afterwards."""

from __future__ import annotations

import csv
import gzip
import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, locust_command, run_locust, server_config

from sonic_bench.cli import main
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.process import free_port
from sonic_bench.triton.deployment import Deployment, GatewayOptions
from sonic_bench.triton.stats import StatsReader

pytestmark = pytest.mark.server
SONIC_BENCH = str(Path(sys.executable).parent / "sonic-bench")


def _deployment(replicas: int, **gateway) -> Deployment:
    config = server_config(models=(MODEL_CALIBRATION,))
    return Deployment(config, replicas, GatewayOptions(**gateway)).start()


@pytest.fixture(scope="module")
def deployment(repository) -> Iterator[Deployment]:
    with _deployment(2) as running:
        yield running


def _sweep(flags: list[str], results: Path, *extra: str) -> list[str]:
    return [
        "sweep", *flags, "--model", MODEL_CALIBRATION, "--batch", "small",
        "--window", "0.3", "--warmup", "0.1", "--max-windows", "3", "--metrics", "off",
        "--results", str(results), *extra,
    ]  # fmt: skip


def _folder(results: Path) -> Path:
    (folder,) = [p for p in results.iterdir() if (p / "manifest.json").exists()]
    return folder


def _rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_sweep_through_the_gateway_counts_what_every_replica_served(
    deployment, tmp_path, capsys, protocol
):
    flags = deployment.client_flags(protocol)
    code = main(_sweep(flags, tmp_path, "--concurrency", "1,4", "--metrics", "direct"))
    assert code == 0, capsys.readouterr().err
    folder = _folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["load"]["parameters"]["gateway"]["replicas"] == [
        r.url(protocol) for r in deployment.reached_replicas()
    ]
    answered: dict[str, int] = defaultdict(int)
    for request in _rows(folder / "requests.csv.gz"):
        if request["ok"] == "1":
            answered[request["step"]] += int(request["batch_size"])
    served: dict[str, int] = defaultdict(int)
    shares = []
    for row in _rows(folder / "replicas.csv"):
        served[row["step"]] += int(row["inferences"])
        shares.append(float(row["share"]))
    assert served == answered  # every inference answered, counted by exactly one replica
    assert min(shares) > 0.2  # least connections spread the load over both
    instances = {r["instance"] for r in _rows(folder / "metrics.csv.gz")}
    assert instances == {r.metrics_url.split("//")[1].split("/")[0] for r in deployment.replicas}
    assert "replicas:" in capsys.readouterr().err


def test_a_locust_run_through_the_gateway_is_complete_with_each_replicas_part(deployment, tmp_path):
    command = locust_command(
        deployment.replicas[0], tmp_path, "--model", MODEL_CALIBRATION, "--metrics", "off",
        "--staircase", "2", "--step-seconds", "3", "--other-seconds", "0.5",
    )  # fmt: skip
    for flag in ("--url", "--protocol"):
        at = command.index(flag)
        del command[at : at + 2]
    command += deployment.client_flags("grpc")
    done = run_locust(command)
    folder = _folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete", done.stderr[-3000:]
    assert len(manifest["load"]["parameters"]["gateway"]["replicas"]) == 2
    # Each step's part of each replica; a request in flight as a step ends may count in
    # the next, so the sum over the steps is what must equal the answered inferences.
    replicas = _rows(folder / "replicas.csv")
    steps = {row["step"] for row in _rows(folder / "steps.csv")}
    assert {row["step"] for row in replicas} == steps and len(replicas) == 2 * len(steps)
    answered = sum(
        int(r["batch_size"]) for r in _rows(folder / "requests.csv.gz") if r["ok"] == "1"
    )
    assert sum(int(row["inferences"]) for row in replicas) == answered
    assert min(float(row["share"]) for row in replicas) > 0.2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_through_the_gateway_checks_its_certificate_and_sends_the_token(
    deployment, tmp_path, capsys, protocol
):
    """NVIDIA's perf_analyzer against a real TLS endpoint: the gateway's own CA (verify
    peer and host over HTTPS), the bearer token as its -H; the replicas served at least
    what it measured (it counts its windows, they count its warm-up too)."""
    flags = deployment.client_flags(protocol)
    code = main([*_sweep(flags, tmp_path, "--concurrency", "2"), "--engine", "perf_analyzer"])
    assert code == 0, capsys.readouterr().err
    folder = _folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "complete", manifest["warnings"]
    assert manifest["load"]["parameters"]["tls"]["ca"]
    (step,) = _rows(folder / "steps.csv")
    served = sum(int(row["inferences"]) for row in _rows(folder / "replicas.csv"))
    assert served >= float(step["requests"]) * float(step["batch_size"]) > 0


def test_a_wrong_token_is_refused_in_one_line_that_names_the_header(deployment, tmp_path, capsys):
    flags = deployment.client_flags("http")
    flags[flags.index("--header") + 1] = "authorization: Bearer not-the-token"
    code = main(_sweep(flags, tmp_path, "--concurrency", "1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "HTTP 401" in err[0] and "--header" in err[0], err


@pytest.mark.parametrize(("protocol", "said"), [("http", "HTTP 429"), ("grpc", "UNAVAILABLE")])
def test_calls_the_gateway_rate_limits_are_rejections_counted_apart(
    repository, tmp_path, capsys, protocol, said
):
    with _deployment(1, rate_limit=40) as limited:
        code = main(_sweep(limited.client_flags(protocol), tmp_path, "--concurrency", "4"))
    folder = _folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (step,) = _rows(folder / "steps.csv")
    assert code == 1 and manifest["status"] == "partial"
    assert int(step["rejected"]) > 0 and step["rejected"] == step["errors"]
    rejected = [w for w in manifest["warnings"] if "rejected by the gateway" in w]
    assert rejected and said in rejected[0], manifest["warnings"]
    assert not [w for w in manifest["warnings"] if "requests failed" in w]


def test_a_replica_stopped_mid_level_is_said_and_no_request_is_lost(repository, tmp_path):
    """A replica drained (SIGTERM: Triton answers what it holds, then exits) while a level
    runs: every request is a record, answered or failed with its reason, and the run says
    which replica stopped."""
    with _deployment(2) as deploying:
        victim = deploying.replicas[1]
        flags = deploying.client_flags("grpc")
        argv = _sweep(flags, tmp_path, "--concurrency", "2", "--max-windows", "12")
        sweep = subprocess.Popen(
            [SONIC_BENCH, *argv[:-2], "--results", str(tmp_path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stats = StatsReader(Endpoint(victim.grpc_url), MODEL_CALIBRATION)
        deadline = time.monotonic() + 60
        while stats.snapshot().inference_count < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the replica's own count, not timing anything
        victim.stop()
        _, err = sweep.communicate(timeout=120)
    folder = _folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert any("stopped answering" in w and victim.grpc_url in w for w in manifest["warnings"]), (
        manifest["warnings"],
        err[-2000:],
    )
    requests = _rows(folder / "requests.csv.gz")
    (step,) = _rows(folder / "steps.csv")
    failed = [r for r in requests if r["ok"] == "0"]
    assert int(step["errors"]) == len(failed)
    if failed:  # a request the replica could not finish is a failure, never an answer
        assert manifest["status"] != "complete"
    lost = [r for r in _rows(folder / "replicas.csv") if r["reachable"] == "False"]
    assert [r["replica"] for r in lost] == [victim.grpc_url]


def test_serve_replicas_gateway_prints_flags_that_reach_it_and_ctrl_c_stops_all(
    repository, tmp_path, capsys
):
    grpc_port, http_port = free_port(), free_port()
    serve = subprocess.Popen(
        [
            SONIC_BENCH, "serve", "--replicas", "2", "--gateway", "--models", MODEL_CALIBRATION,
            "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(serve.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("http: ") for line in lines):
            assert serve.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.1)
        (line,) = [line for line in lines if line.startswith("http: ")]
        flags = shlex.split(line.split("sonic-bench sweep ", 1)[1])
        code = main(_sweep(flags, tmp_path, "--concurrency", "1"))
        assert code == 0, capsys.readouterr().err
        started = psutil.Process(serve.pid).children(recursive=True)
        names = {p.name() for p in started}
        assert "nginx" in names and "tritonserver" in names, names
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            stopped = serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.terminate()  # its own clean stop, so that the failure leaves nothing behind
            serve.wait(timeout=60)
            raise
        assert stopped == 0
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [p.cmdline()[:3] for p in alive]  # the gateway and every replica
