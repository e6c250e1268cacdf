"""The sweep against the real embedded server."""

from __future__ import annotations

import csv
import gzip
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import ROOT, quick_sweep, server_config

from sonic_bench.cli import main
from sonic_bench.engine.client import EncodedBatches, InferClient, InferError
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.level import Level, MeasurementSettings, measure_level
from sonic_bench.metrics.exposition import model_value, scrape
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.results.store import REQUESTS, read_run
from sonic_bench.triton.server import EmbeddedServer
from sonic_bench.triton.stats import StatsReader

QUICK = MeasurementSettings(window_s=0.5, warmup_s=0.2, max_windows=3)


def _client_factory(server, model, pool):
    endpoint = Endpoint(server.grpc_url)
    batches = EncodedBatches([b.patches for b in pool.batches[:4]])
    return endpoint, (lambda: InferClient(endpoint, model, batches))


@pytest.mark.parametrize(
    ("protocol", "shared_memory"),
    [("grpc", False), ("http", False), ("grpc", True), ("http", True)],
)
def test_recorded_inferences_equal_tritons_own_counter(server, small_pool, protocol, shared_memory):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    endpoint = Endpoint(url, protocol, shared_memory=shared_memory)
    arrays = [b.patches for b in small_pool.batches[:4]]
    before = model_value(scrape(server.metrics_url), "nv_inference_count", MODEL_CALIBRATION)
    with EncodedBatches(arrays) as batches:
        result = measure_level(
            0,
            Level(concurrency=4),
            lambda: InferClient(endpoint, MODEL_CALIBRATION, batches),
            QUICK,
            StatsReader(endpoint, MODEL_CALIBRATION),
        )
    after = model_value(scrape(server.metrics_url), "nv_inference_count", MODEL_CALIBRATION)
    recorded = sum(r.batch_size for r in result.records if r.ok)
    assert recorded > 0 and all(r.ok for r in result.records)
    assert after - before == recorded
    assert result.server_level.inference_count == recorded


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_refused_request_says_what_triton_said(server, protocol):
    """Requests go out pre-serialized on both transports; Triton's own reason for a
    refusal still reaches the user, and the connection serves the next request."""
    wrong, right = np.zeros((2, 10, 10, 1), np.float32), np.zeros((3, 48, 48, 1), np.float32)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    batches = EncodedBatches([wrong, right])
    client = InferClient(Endpoint(url, protocol), MODEL_CALIBRATION, batches)
    try:
        with pytest.raises(InferError, match="unexpected shape for input 'main_input'"):
            client.infer(0)
        assert client.infer(1) == 3
    finally:
        client.close()


def test_level_row_has_server_side_times(server, small_pool):
    endpoint, make_client = _client_factory(server, MODEL_NO_DYNAMIC_BATCHING, small_pool)
    stats = StatsReader(endpoint, MODEL_NO_DYNAMIC_BATCHING)
    result = measure_level(0, Level(concurrency=2), make_client, QUICK, stats)
    row = result.as_row()
    assert row["requests"] > 0 and row["errors"] == 0
    assert row["server_compute_infer_us"] > 0
    assert row["server_batch_avg"] == pytest.approx(row["batch_size"], rel=0.5)
    assert row["latency_ms_p50"] <= row["latency_ms_p99"]


def test_open_loop_latency_includes_schedule_lag(server, small_pool):
    # One worker against a model that needs tens of ms per request, asked for 200/s:
    # requests queue on the client, and their latency must show it.
    _, make_client = _client_factory(server, MODEL_NO_DYNAMIC_BATCHING, small_pool)
    level = Level(rate=200.0, max_in_flight=1)
    result = measure_level(0, level, make_client, QUICK, None)
    ok = [r for r in result.records if r.ok]
    service_ms = np.mean([(r.t_recv - r.t_send) * 1000 for r in ok])
    latency_ms = np.mean([r.latency_ms for r in ok])
    assert latency_ms > 3 * service_ms
    assert result.send_lag_ms > service_ms


def test_killing_the_server_mid_sweep_keeps_finished_levels(repository, tmp_path):
    server = EmbeddedServer(server_config()).start()
    results = tmp_path / "results"
    arguments = (
        f"sweep --url {server.grpc_url} --calibration --batch small --concurrency 1,1,1,1,1,1 "
        f"--window 0.5 --warmup 0.2 --max-windows 3 --metrics off --results {results}"
    )
    command = [sys.executable, "-m", "sonic_bench.cli", *arguments.split()]
    sweep = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(results.glob("*/steps.csv")) and sweep.poll() is None:
            assert time.monotonic() < deadline, "the sweep wrote no level"
            time.sleep(0.1)
        os.killpg(server.pid, signal.SIGKILL)
        _, stderr = sweep.communicate(timeout=120)
    finally:
        server.stop()
        sweep.kill()
    assert sweep.returncode != 0
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("sonic-bench: error:") and ("failed" in last or "statistics" in last)
    (folder,) = results.iterdir()
    run = read_run(folder)
    assert run.manifest.status == "partial"
    assert len(run.steps) >= 1 and int(run.steps[0]["requests"]) > 0


def _http_sweep(server, tmp_path, *extra: str):
    code = main(
        ["sweep", "--url", server.http_url, "--protocol", "http", "--model", MODEL_CALIBRATION,
         "--batch", "large", "--concurrency", "1", "--pool-batches", "6", "--window", "0.3",
         "--warmup", "0.1", "--max-windows", "2", "--metrics", "off",
         "--results", str(tmp_path), *extra]
    )  # fmt: skip
    assert code == 0
    (folder,) = tmp_path.iterdir()
    with gzip.open(folder / REQUESTS, "rt", newline="") as f:
        sizes = {int(row["batch_size"]) for row in csv.DictReader(f)}
    return read_run(folder).manifest, sizes


def test_uniform_batches_send_perf_analyzers_requests_and_large_http_ones_are_flagged(
    server, tmp_path
):
    """The realistic large mix has HTTP requests over 16 MiB, which Triton receives
    slower (said, as a warning); --uniform-batches sends every one at the average size,
    as perf_analyzer does, and says so in the manifest; with shared memory it replays
    one batch, as perf_analyzer's shared memory does."""
    realistic, sizes = _http_sweep(server, tmp_path / "realistic")
    assert not realistic.workload.uniform_batches and len(sizes) > 1
    assert realistic.workload.replayed_batches == 6
    assert any("HTTP requests carry over 16 MiB" in w for w in realistic.warnings)
    uniform, sizes = _http_sweep(server, tmp_path / "uniform", "--uniform-batches")
    assert uniform.workload.uniform_batches and uniform.workload.replayed_batches == 6
    assert sizes == {round(uniform.workload.avg_batch_size)}
    assert not any("16 MiB" in w for w in uniform.warnings)
    shared, sizes = _http_sweep(server, tmp_path / "shared", "--uniform-batches", "--shared-memory")
    assert shared.workload.replayed_batches == 1
    assert sizes == {round(shared.workload.avg_batch_size)}


def test_busy_polling_is_recorded_and_refused_for_perf_analyzer(server, tmp_path, capsys):
    code = main(quick_sweep(server, tmp_path, "--concurrency", "1", "--busy-poll", "200"))
    assert code == 0
    (folder,) = tmp_path.iterdir()
    assert read_run(folder).manifest.load.parameters["busy_poll_us"] == 200.0
    capsys.readouterr()
    assert main(["sweep", "--engine", "perf_analyzer", "--busy-poll", "10"]) == 2
    assert "--busy-poll is the native engine's" in capsys.readouterr().err
    assert main(["sweep", "--busy-poll", "-1"]) == 2
    assert "--busy-poll must not be negative" in capsys.readouterr().err
