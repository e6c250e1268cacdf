"""Server metrics through a real Prometheus (and the fallback), against the real server."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import numpy as np
import pytest
import requests

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.level import Level, MeasurementSettings, measure_level
from sonic_bench.metrics.collect import PrometheusSource
from sonic_bench.metrics.exposition import parse
from sonic_bench.metrics.recording import MetricsOptions, RunMetrics
from sonic_bench.metrics.summary import counter_increase
from sonic_bench.model.repository import (
    MODEL_CALIBRATION,
    MODEL_DYNAMIC_BATCHING,
    MODEL_JET_TAGGER,
    MODEL_NO_DYNAMIC_BATCHING,
)
from sonic_bench.process import free_port
from sonic_bench.results.store import read_run
from sonic_bench.runs.sweep import SweepPlan, configurations, levels, run_sweep
from sonic_bench.runs.target import Target
from sonic_bench.triton.stats import StatsReader

REQUEST_PATCHES = 16
# Levels several scrape intervals long: Prometheus sees a level through 1 s samples.
SETTINGS = MeasurementSettings(window_s=1.5, warmup_s=0.5, max_windows=3)


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    options = MetricsOptions(mode="prometheus", prometheus_port=free_port())
    with RunMetrics(options, server.metrics_url) as metrics:
        assert metrics.info().source == "prometheus", metrics.warnings
        metrics.ready_to_measure()
        yield metrics


def _level(server, model: str, patches: np.ndarray, concurrency: int):
    endpoint = Endpoint(server.grpc_url)
    batches = EncodedBatches([patches])
    return measure_level(
        0,
        Level(concurrency=concurrency),
        lambda: InferClient(endpoint, model, batches),
        SETTINGS,
        StatsReader(endpoint, model),
    )


@pytest.mark.parametrize(
    ("model", "merges"), [(MODEL_DYNAMIC_BATCHING, True), (MODEL_NO_DYNAMIC_BATCHING, False)]
)
def test_recorded_executed_batch_size(server, prometheus, patches, model, merges):
    request = patches[:REQUEST_PATCHES]
    result = _level(server, model, request, concurrency=16)
    summary = prometheus.level(model, *result.span)
    if merges:
        assert summary.exec_batch_avg > REQUEST_PATCHES
    else:
        assert summary.exec_batch_avg == pytest.approx(REQUEST_PATCHES)
    assert 0 <= summary.cpu_utilization <= 1


def test_server_count_over_a_level_agrees_with_the_client(server, prometheus, patches):
    time.sleep(prometheus.options.interval_s * 2)  # an idle scrape before the level
    start = time.time() - prometheus.options.interval_s
    result = _level(server, MODEL_CALIBRATION, patches, concurrency=4)
    # Range queries are evaluated on a 1 s grid from the last scrape at or before each
    # point: 2.5 intervals after the level, a scrape taken after its last answer counts.
    end = time.time() + prometheus.options.interval_s * 2.5
    samples = prometheus.source.samples(start, end)
    served = counter_increase(samples, "nv_inference_count", MODEL_CALIBRATION, start, end)
    assert served == sum(r.batch_size for r in result.records if r.ok)


def test_a_sweeps_first_level_has_server_values_with_no_workload_to_build(server, tmp_path):
    """The jet tagger's random inputs take no time to make, so the first level begins as
    Prometheus starts, seconds before its first scrape (its discovery's 5 s throttle):
    the run waits for that scrape, and the level has its server values."""
    plan = SweepPlan(
        configurations([64], "off", model=MODEL_JET_TAGGER),
        levels([1]),
        MeasurementSettings(window_s=1.0, warmup_s=0.2, max_windows=2),
        pool_batches=2,
        results=tmp_path,
    )
    options = MetricsOptions(mode="prometheus", prometheus_port=free_port())
    target = Target(url=server.grpc_url, metrics_url=server.metrics_url)
    (run,) = run_sweep(plan, target, options)
    written = read_run(run.folder)
    assert written.manifest.metrics.source == "prometheus", written.manifest.warnings
    assert 0 <= float(written.steps[0]["cpu_utilization"]) <= 1, written.steps[0]


def test_a_prometheus_that_scrapes_nothing_in_time_gives_way_to_direct_reading(server):
    """Its first scrape comes ~5.5 s after it starts: with a start timeout of 1 s, the run
    reads Triton directly instead, and says so."""
    options = MetricsOptions(mode="prometheus", prometheus_port=free_port())
    with RunMetrics(options, server.metrics_url) as metrics:
        metrics.server.config = replace(metrics.server.config, startup_timeout_s=1.0)
        metrics.ready_to_measure()
        assert metrics.info().source == "direct" and metrics.info().status == "fallback"
        assert any("scraped no Triton target within 1 s" in w for w in metrics.warnings)


def _fallback_run(server, tmp_path, options: MetricsOptions):
    with RunMetrics(options, server.metrics_url) as metrics:
        assert metrics.info().source == "direct" and metrics.info().status == "fallback"
        assert metrics.warnings and "directly" in metrics.warnings[0]
        start = time.time()
        _level(server, MODEL_CALIBRATION, np.zeros((8, 48, 48, 1), np.float32), concurrency=2)
        summary = metrics.level(MODEL_CALIBRATION, start, time.time())
        written = metrics.write(tmp_path, start, time.time())
    assert summary.inferences_per_s > 0
    assert written.exists()
    return metrics.warnings[0]


def test_prometheus_binary_absent_falls_back(server, tmp_path):
    options = MetricsOptions(prometheus_binary="no-such-prometheus", prometheus_port=free_port())
    assert "not found" in _fallback_run(server, tmp_path, options)


def test_prometheus_port_taken_falls_back(server, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        options = MetricsOptions(prometheus_port=taken.getsockname()[1])
        assert "is taken" in _fallback_run(server, tmp_path, options)


def test_unreachable_prometheus_url_falls_back(server, tmp_path):
    options = MetricsOptions(prometheus_url=f"http://127.0.0.1:{free_port()}")
    assert "unreachable" in _fallback_run(server, tmp_path, options)


@pytest.mark.timeout(30)  # the client's default waited for ever here
def test_a_prometheus_that_never_answers_is_given_up_on():
    """One that accepts connections and never answers (hung, or the port is something
    else's): the reachability check says no and a query fails, each within its timeout,
    so a run reads Triton directly instead of stalling."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        source = PrometheusSource(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        assert not source.reachable()
        with pytest.raises(requests.RequestException):
            source.samples(time.time() - 10, time.time() - 5)


def test_exposition_parser_reads_labels_and_values():
    text = (
        "# HELP nv_inference_count Number of inferences\n"
        'nv_inference_count{model="m",version="1"} 42\n'
        'nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 3\n'
        "nv_cpu_utilization 0.5\n"
    )
    samples = parse(text)
    assert [(s.metric, s.label("model"), s.value) for s in samples] == [
        ("nv_inference_count", "m", 42.0),
        ("nv_inference_request_failure", "m", 3.0),
        ("nv_cpu_utilization", None, 0.5),
    ]
    assert samples[1].label("reason") == "REJECTED"
