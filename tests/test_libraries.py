"""Where sonic-bench leans on the field's libraries, their behaviour on the edge cases:
Prometheus' text format, Triton's model config, counters that reset."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import server_config

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.level import Level, MeasurementSettings, measure_level
from sonic_bench.metrics.collect import DirectSource, PrometheusSource, TimedSample
from sonic_bench.metrics.exposition import parse
from sonic_bench.metrics.prometheus import PrometheusConfig, PrometheusServer
from sonic_bench.metrics.summary import counter_increase, series_increase
from sonic_bench.model.repository import MODEL_CALIBRATION, parameter, read_config
from sonic_bench.process import free_port
from sonic_bench.triton.server import EmbeddedServer


def test_label_values_with_escapes_and_braces_parse():
    text = (
        "# TYPE nv_inference_count counter\n"
        'nv_inference_count{model="a}b",note="say \\"hi\\"\\\\",version="1"} 42\n'
        "# TYPE nv_cpu_utilization gauge\n"
        "nv_cpu_utilization NaN\n"
    )
    count, cpu = parse(text)
    assert count.metric == "nv_inference_count"  # as Triton wrote it, no `_total` added
    assert count.label("model") == "a}b"
    assert count.label("note") == 'say "hi"\\'
    assert count.value == 42
    assert cpu.metric == "nv_cpu_utilization" and np.isnan(cpu.value)


SPELLINGS = {
    "colons": 'name: "m"\nbackend: "python"\nmax_batch_size: 8\n'
    'parameters: { key: "compute", value: { string_value: "zeros" } }\n',
    "no colons before messages": 'name: "m"\nbackend: "python"\nmax_batch_size: 8\n'
    'parameters { key: "compute" value { string_value: "zeros" } }\n',
    "lists and commas": 'name: "m", backend: "python", max_batch_size: 8,\n'
    'parameters [ { key: "compute", value { string_value: "zeros" } } ]\n'
    'input [ { name: "x", data_type: TYPE_FP32, dims: [ 48, 48, 1 ] } ]\n',
    "one line": 'name:"m" backend:"python" max_batch_size:8 '
    'parameters{key:"compute" value{string_value:"zeros"}}',
}


@pytest.mark.parametrize("text", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_every_valid_config_spelling_reads_and_round_trips(tmp_path, text):
    from sonic_bench.model.repository import write_config

    path = tmp_path / "config.pbtxt"
    path.write_text(text)
    config = read_config(path)
    assert (config.name, config.backend, config.max_batch_size) == ("m", "python", 8)
    assert parameter(config, "compute") == "zeros"
    write_config(path, config)
    assert read_config(path) == config


def test_a_config_that_triton_would_reject_is_one_clear_error(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\nmax_batch: 8\n')
    with pytest.raises(Exception, match="not a valid Triton model config"):
        read_config(path)


def _sample(t: float, value: float) -> TimedSample:
    return TimedSample(t, "nv_inference_count", (("model", "m"),), value)


def test_a_counter_that_resets_counts_what_was_done():
    # 100 done, the server restarts (counter back to 0), 30 more done
    points = [_sample(t, v) for t, v in [(0, 0), (1, 60), (2, 100), (3, 10), (4, 30)]]
    assert series_increase(points, 0, 4)[0] == 130
    assert counter_increase(points, "nv_inference_count", "m", 0, 4) == 130


def _send(server: EmbeddedServer, requests: int) -> int:
    endpoint = Endpoint(server.grpc_url)
    batches = EncodedBatches([np.zeros((10, 48, 48, 1), np.float32)])
    client = InferClient(endpoint, MODEL_CALIBRATION, batches)
    try:
        return sum(client.infer(0) for _ in range(requests))
    finally:
        client.close()


def _wait_for_first_scrape(url: str, since: float) -> None:
    """A counter's first sample is its baseline (for PromQL too): let Prometheus see the
    idle server before it serves anything."""
    source, deadline = PrometheusSource(url, 0.5), time.monotonic() + 30
    while not any(s.metric == "nv_inference_count" for s in source.samples(since, time.time())):
        assert time.monotonic() < deadline, "Prometheus never scraped the server"
        time.sleep(0.5)


def test_a_server_restart_mid_level_gives_the_right_increase_both_ways():
    """The real fault: Triton restarted on the same ports; its counters start again at
    zero. Read directly and through a real Prometheus, the increase is what was served."""
    config = server_config(models=(MODEL_CALIBRATION,))
    metrics_url = f"http://127.0.0.1:{config.metrics_port}/metrics"
    prometheus = PrometheusServer(
        PrometheusConfig((f"127.0.0.1:{config.metrics_port}",), port=free_port(), interval_s=0.5)
    ).start()
    direct = DirectSource(metrics_url, interval_s=0.5)
    try:
        start = time.time()
        with EmbeddedServer(config).start() as first:
            _wait_for_first_scrape(prometheus.url, start)
            served = _send(first, 30)
            time.sleep(1.5)  # scraped before the stop
        with EmbeddedServer(config).start() as second:
            time.sleep(1.5)
            served += _send(second, 20)
            time.sleep(1.5)
        end = time.time()
        through_prometheus = PrometheusSource(prometheus.url, 0.5).samples(start, end)
        read_directly = direct.samples(start, end)
    finally:
        direct.close()
        prometheus.stop()
    for samples in (through_prometheus, read_directly):
        assert (
            counter_increase(samples, "nv_inference_count", MODEL_CALIBRATION, start, end) == served
        )


SETTINGS = MeasurementSettings(window_s=1.0, warmup_s=0.2, max_windows=2)


def test_measured_level_is_unchanged_by_the_parser(server, patches):
    """The parser swap leaves what a level reads from Triton's /metrics as it was."""
    endpoint = Endpoint(server.grpc_url)
    batches = EncodedBatches([patches[:8]])
    direct = DirectSource(server.metrics_url, interval_s=0.25)
    try:
        time.sleep(0.6)  # scrapes of the idle server before the level
        start = time.time() - 0.5
        result = measure_level(
            0,
            Level(concurrency=1),
            lambda: InferClient(endpoint, MODEL_CALIBRATION, batches),
            SETTINGS,
            None,
        )
        time.sleep(0.6)
        samples = direct.samples(start, time.time())
    finally:
        direct.close()
    served = counter_increase(samples, "nv_inference_count", MODEL_CALIBRATION, start, time.time())
    assert served == sum(r.batch_size for r in result.records if r.ok)
