"""The load drivers' event loop against the real server: every request in flight driven
from one thread, large requests written as the socket takes them, a late answer failed
on time."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.level import Level, LevelHooks, MeasurementSettings, measure_level
from sonic_bench.metrics.exposition import model_value, scrape
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.process import free_port
from sonic_bench.triton.stats import StatsReader

QUICK = MeasurementSettings(window_s=0.5, warmup_s=0.2, max_windows=3)


def _most_in_flight(records) -> int:
    """The most requests that were out at the same time."""
    edges = sorted([(r.t_send, 1) for r in records] + [(r.t_recv, -1) for r in records])
    return int(np.max(np.cumsum([step for _, step in edges])))


def test_sixty_four_requests_in_flight_from_one_thread(server, patches):
    endpoint = Endpoint(server.grpc_url)
    # Which threads, not how many: a thread left by an earlier test may end meanwhile.
    before = set(threading.enumerate())
    started: set[threading.Thread] = set()
    hooks = LevelHooks(on_window=[lambda *_: started.update(set(threading.enumerate()) - before)])
    with EncodedBatches([patches[:8], patches[8:16]]) as batches:
        result = measure_level(
            0,
            Level(concurrency=64),
            lambda: InferClient(endpoint, MODEL_CALIBRATION, batches),
            QUICK,
            None,
            hooks,
        )
    assert result.records and all(r.ok for r in result.records)
    assert {r.worker for r in result.records} == set(range(64))
    assert _most_in_flight(result.records) == 64
    assert len(started) == 1, started  # the loop's thread, whatever the concurrency


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_requests_larger_than_the_socket_takes_go_whole(server, patches, protocol):
    """2,300 patches are 21 MB: far more than a socket's buffer (and the first HTTP/2
    window), so the loop writes each request over many turns, two at a time; every one
    is answered and Triton counts exactly what was recorded (once its statistics settle:
    Triton counts a request just after answering it)."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    endpoint = Endpoint(url, protocol)
    batch = np.resize(patches, (2300, *patches.shape[1:]))
    before = model_value(scrape(server.metrics_url), "nv_inference_count", MODEL_CALIBRATION)
    with EncodedBatches([batch]) as batches:
        result = measure_level(
            0,
            Level(concurrency=2),
            lambda: InferClient(endpoint, MODEL_CALIBRATION, batches),
            QUICK,
            StatsReader(endpoint, MODEL_CALIBRATION),
        )
    after = model_value(scrape(server.metrics_url), "nv_inference_count", MODEL_CALIBRATION)
    recorded = sum(r.batch_size for r in result.records)
    assert len(result.records) >= 4 and all(r.ok for r in result.records)
    assert result.server_level.inference_count == recorded
    assert after - before == recorded


def test_an_answer_later_than_the_timeout_fails_the_request(server, patches):
    """The CNN takes tens of ms for a batch here; with a 5 ms timeout the first request
    fails with the reason, and the level ends at once instead of measuring on."""
    endpoint = Endpoint(server.grpc_url, timeout_s=0.005)
    with EncodedBatches([patches]) as batches:
        result = measure_level(
            0,
            Level(concurrency=1),
            lambda: InferClient(endpoint, MODEL_NO_DYNAMIC_BATCHING, batches),
            QUICK,
            None,
        )
    assert "timed out" in result.failure
    assert result.records and not any(r.ok for r in result.records)
    assert "no answer within 0.005 s" in result.records[0].error
    assert result.as_row()["errors"] == len(result.records)
    assert any("requests failed" in w for w in result.warnings)


def test_a_client_that_cannot_start_ends_the_level_at_once(patches):
    """Nothing listens on the port: registering the shared-memory inputs fails in the
    load thread, and the level stops with that reason instead of measuring nothing."""
    endpoint = Endpoint(f"127.0.0.1:{free_port()}", shared_memory=True)
    windows: list[object] = []
    hooks = LevelHooks(on_window=[lambda *args: windows.append(args)])
    with EncodedBatches([patches[:4]]) as batches:
        result = measure_level(
            0,
            Level(concurrency=2),
            lambda: InferClient(endpoint, MODEL_CALIBRATION, batches),
            QUICK,
            None,
            hooks,
        )
    assert result.failure.startswith("a client could not start: ")
    assert len(windows) <= 1


def test_busy_polling_spends_the_clients_core_instead_of_sleeping(server, patches):
    """While a request is out the loop polls instead of sleeping: the client's CPU shows
    it (and the level gives no client-bound warning for a core it chose to spend)."""
    endpoint = Endpoint(server.grpc_url)
    cpu = {}
    with EncodedBatches([patches[:8]]) as batches:
        for busy_poll_us in (0.0, 5000.0):
            settings = dataclasses.replace(QUICK, busy_poll_us=busy_poll_us)
            result = measure_level(
                0,
                Level(concurrency=1),
                lambda: InferClient(endpoint, MODEL_CALIBRATION, batches),
                settings,
                None,
            )
            assert result.records and all(r.ok for r in result.records)
            assert not any("of a core" in w for w in result.warnings)
            cpu[busy_poll_us] = result.client_cpu_percent
    assert cpu[5000.0] > cpu[0.0] + 20
