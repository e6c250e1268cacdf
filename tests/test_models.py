"""Any model the server serves: its tensors read from the server, its requests sent as
Triton's protocol defines them, its answers checked; sweep and Locust through one door."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, locust_command, read_requests, run_locust, server_config
from hostile import HostileGrpc, HostileHttp, every

from sonic_bench.cli import main
from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.errors import SonicBenchError
from sonic_bench.metrics.exposition import model_value, scrape
from sonic_bench.model.repository import MODEL_JET_TAGGER
from sonic_bench.model.signature import (
    Batch,
    ModelSignature,
    TensorSpec,
    bf16_bytes,
    parse_shapes,
    serialize_bytes,
    signature_of,
)
from sonic_bench.perf_analyzer.engine import find_binary
from sonic_bench.results.store import read_run
from sonic_bench.triton.client import check_server
from sonic_bench.triton.server import EmbeddedServer
from sonic_bench.workload.inputs import InputData, make_batches

TEXT_MODEL = "text_lengths"
SHORT = ["--window", "0.3", "--warmup", "0.1", "--max-windows", "3", "--metrics", "off"]


def _sweep(url: str, results: Path, *extra: str) -> list[str]:
    return ["sweep", "--url", url, "--concurrency", "1,2", *SHORT, "--results", str(results),
            *extra]  # fmt: skip


def _served(server, model: str) -> tuple[float, float]:
    text = scrape(server.metrics_url)
    return (
        model_value(text, "nv_inference_request_success", model),
        model_value(text, "nv_inference_count", model),
    )


def _only_run(results: Path):
    (folder,) = results.iterdir()
    return folder, read_run(folder)


@pytest.fixture(scope="module")
def text_server(tmp_path_factory):
    """The embedded server with the test repository's BYTES model."""
    config = server_config(repository=ROOT / "tests" / "model_repository")
    with EmbeddedServer(config).start() as running:
        yield running


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_signature_is_read_from_the_server(server, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    signature = check_server(Endpoint(url, protocol), MODEL_JET_TAGGER)["signature"]
    assert [(s.name, s.datatype, s.dims) for s in signature.inputs] == [
        ("pf_features", "FP16", (64, 8)), ("pf_count", "INT64", (1,)), ("jet_p4", "FP32", (4,)),
    ]  # fmt: skip
    assert [(s.name, s.datatype) for s in signature.outputs] == [
        ("class_probs", "FP16"), ("top_class", "INT64"),
    ]  # fmt: skip
    assert signature.max_batch_size == 1024 and signature.dynamic_batching


@pytest.mark.parametrize(
    "transport",
    [["--protocol", "grpc"], ["--protocol", "http"], ["--shared-memory"],
     ["--protocol", "http", "--shared-memory"]],
    ids=["grpc", "http", "grpc-shm", "http-shm"],
)  # fmt: skip
def test_the_second_model_sweeps_on_every_transport(server, tmp_path, transport):
    url = server.http_url if "http" in transport else server.grpc_url
    requests_before, inferences_before = _served(server, MODEL_JET_TAGGER)
    argv = _sweep(url, tmp_path, "--model", MODEL_JET_TAGGER, "--batch", "8..40", *transport)
    assert main(argv) == 0
    folder, run = _only_run(tmp_path)
    requests_after, inferences_after = _served(server, MODEL_JET_TAGGER)
    sent = read_requests(folder)
    assert run.manifest.status == "complete" and all(r["ok"] == "1" for r in sent)
    assert requests_after - requests_before == len(sent)
    assert inferences_after - inferences_before == sum(int(r["batch_size"]) for r in sent)
    sizes = {int(r["batch_size"]) for r in sent}
    assert len(sizes) > 1 and min(sizes) >= 8 and max(sizes) <= 40
    inputs = run.manifest.workload.inputs
    assert inputs["source"] == "random" and inputs["batch"] == "8..40"
    assert inputs["datatypes"] == {"pf_features": "FP16", "pf_count": "INT64", "jet_p4": "FP32"}


def test_the_second_model_through_perf_analyzer(server, tmp_path):
    find_binary()
    argv = _sweep(server.grpc_url, tmp_path, "--model", MODEL_JET_TAGGER, "--batch", "16",
                  "--engine", "perf_analyzer")  # fmt: skip
    assert main(argv) == 0
    _, run = _only_run(tmp_path)
    assert run.manifest.status == "complete"
    assert all(int(step["requests"]) > 0 and int(step["errors"]) == 0 for step in run.steps)


def test_the_second_model_as_grid_jobs_then_analyzed(server, tmp_path):
    results = tmp_path / "results"
    before = _served(server, MODEL_JET_TAGGER)[1]
    command = locust_command(
        server, results, "--model", MODEL_JET_TAGGER, "--batch", "32",
        "--requests-per-event", "4", "--event-scale", "1", "--other-seconds", "0.2",
        "--preprocess-seconds", "0.05", "--staircase", "1,2", "--step-seconds", "3",
        "--metrics", "off",
    )  # fmt: skip
    done = run_locust(command)
    assert done.returncode == 0, done.stderr[-3000:]
    folder, run = _only_run(results)
    sent = read_requests(folder)
    assert run.manifest.status == "complete" and run.manifest.workload.inputs["batch"] == "32"
    assert _served(server, MODEL_JET_TAGGER)[1] - before == sum(int(r["batch_size"]) for r in sent)
    assert run.manifest.load.parameters["requests_per_event"] == 4
    out = tmp_path / "analysis"
    assert main(["analyze", str(results), "--output", str(out)]) == 0
    assert MODEL_JET_TAGGER in (out / "report.md").read_text()


def test_a_bytes_input_of_variable_length_is_sent_as_triton_defines_it(
    text_server, tmp_path, capsys
):
    argv = _sweep(text_server.grpc_url, tmp_path / "a", "--model", TEXT_MODEL, "--batch", "4")
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "input text BYTES [-1] has variable dimensions" in line and "--shape text:D" in line
    before = _served(text_server, TEXT_MODEL)[0]
    for protocol, url in (("grpc", text_server.grpc_url), ("http", text_server.http_url)):
        argv = _sweep(url, tmp_path / protocol, "--model", TEXT_MODEL, "--batch", "4",
                      "--shape", "text:3", "--protocol", protocol)  # fmt: skip
        assert main(argv) == 0
        folder, run = _only_run(tmp_path / protocol)
        assert run.manifest.status == "complete"
        assert run.manifest.workload.inputs["shapes"] == {"text": [3]}
        before += len(read_requests(folder))
    assert _served(text_server, TEXT_MODEL)[0] == before


def test_a_shared_memory_answer_of_unknown_size_is_refused_in_one_line(
    text_server, tmp_path, capsys
):
    argv = _sweep(text_server.grpc_url, tmp_path, "--model", TEXT_MODEL, "--shape", "text:3",
                  "--batch", "4", "--shared-memory")  # fmt: skip
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "output lengths INT32 [-1]" in line and "drop --shared-memory" in line


def _perf_analyzer_example(path: Path) -> Path:
    """An input file for the jet tagger in the forms perf_analyzer's documentation shows:
    a flat row-major list, {"b64": ...}, and {"content": {"b64": ...}, "shape": ...}
    (perf_analyzer takes FP16 only as base64)."""
    rng = np.random.default_rng(7)
    entries = []
    for i in range(5):
        features = rng.random((64, 8)).astype(np.float16)
        p4 = rng.random(4).astype(np.float32)
        entries.append({
            "pf_features": {"content": {"b64": base64.b64encode(features.tobytes()).decode()},
                            "shape": [64, 8]},
            "pf_count": [i + 3],
            "jet_p4": {"b64": base64.b64encode(p4.tobytes()).decode()},
        })  # fmt: skip
    path.write_text(json.dumps({"data": entries}))
    return path


def test_perf_analyzers_input_files_are_read_and_sent(server, tmp_path):
    data = _perf_analyzer_example(tmp_path / "jets.json")
    signature = check_server(Endpoint(server.grpc_url), MODEL_JET_TAGGER)["signature"]
    (batch,) = make_batches(signature, InputData.parse(str(data)), [7], seed=0)
    document = json.loads(data.read_text())["data"]
    assert batch.tensors[1][:, 0].tolist() == [3, 4, 5, 6, 7, 3, 4]  # in turn, wrapping
    np.testing.assert_array_equal(
        batch.tensors[2][1], np.frombuffer(base64.b64decode(document[1]["jet_p4"]["b64"]), "<f4")
    )
    assert batch.tensors[0].dtype == np.float16 and batch.tensors[0].shape == (7, 64, 8)
    # perf_analyzer itself takes the same file: it is its format.
    done = subprocess.run(
        [str(find_binary()), "-m", MODEL_JET_TAGGER, "-u", server.grpc_url, "-i", "grpc",
         "-b", "2", "--input-data", str(data), "-p", "300", "--concurrency-range", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert "Successfully read data for 1 stream/streams with 5 step/steps" in said, said[-2000:]
    assert "error" not in said.lower(), said[-2000:]  # (a level it could not stabilise is not)
    argv = _sweep(server.grpc_url, tmp_path / "r", "--model", MODEL_JET_TAGGER, "--batch", "6",
                  "--input-data", str(data), "--concurrency", "1")  # fmt: skip
    assert main(argv) == 0
    _, run = _only_run(tmp_path / "r")
    assert run.manifest.status == "complete"
    assert run.manifest.workload.inputs["source"] == str(data)


def test_a_folder_of_raw_files_per_input_is_read(tmp_path):
    signature = ModelSignature(
        (TensorSpec("a", "INT32", (2,)), TensorSpec("b", "BYTES", (1,))),
        (TensorSpec("y", "FP32", (1,)),),
        max_batch_size=8,
    )
    (tmp_path / "a").write_bytes(np.array([5, 6], "<i4").tobytes())
    (tmp_path / "b").write_bytes(serialize_bytes(np.array([b"jet"], dtype=object)))
    (batch,) = make_batches(signature, InputData.parse(str(tmp_path)), [3], seed=0)
    assert batch.tensors[0].tolist() == [[5, 6]] * 3
    assert batch.tensors[1].tolist() == [[b"jet"]] * 3


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ({"inputs": [{"name": "x", "datatype": "FP8", "shape": [-1, 2]}]}, r"x FP8 .* not one"),
        ({"batch": 2000}, r"batch 2000 is over the model's max_batch_size 1024"),
    ],
)
def test_what_the_engine_cannot_send_is_refused_naming_the_tensor(problem, message):
    metadata = {
        "inputs": problem.get("inputs", [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]),
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    }
    signature = signature_of(metadata, {"max_batch_size": 1024})
    with pytest.raises(SonicBenchError, match=message):
        signature.check_sendable(problem.get("batch", 4))


def test_shapes_and_bf16_as_the_protocol_defines_them():
    assert parse_shapes(["pf:64,8", "ns/x:1"]) == {"pf": (64, 8), "ns/x": (1,)}
    with pytest.raises(SonicBenchError, match="NAME:D1,D2"):
        parse_shapes(["pf:64,x"])
    # 1.0 is 0x3F80 in BF16; 1 + 2^-8 rounds to even (down), 1 + 3 * 2^-8 up.
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8], np.float32)
    assert np.frombuffer(bf16_bytes(values), "<u2").tolist() == [0x3F80, 0x3F80, 0x3F82]
    assert serialize_bytes(np.array([b"ab", b""], dtype=object)) == b"\x02\0\0\0ab\0\0\0\0"


@pytest.mark.parametrize("fault", ["drop", "reshape", "retype"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_answer_unlike_the_metadata_is_a_failed_request(server, protocol, fault):
    """A server that answers OK with an output missing, reshaped or retyped has not served
    the request: it fails, with the reason."""
    front_class, url = (
        (HostileGrpc, server.grpc_url) if protocol == "grpc" else (HostileHttp, server.http_url)
    )
    signature = check_server(Endpoint(url, protocol), MODEL_JET_TAGGER)["signature"]
    (batch,) = make_batches(signature, InputData("random"), [4], seed=1)
    reasons = {"drop": "no output 'top_class'", "reshape": "has shape", "retype": "is FP64"}
    with front_class(url, every(2, fault)) as front:
        client = InferClient(Endpoint(front.url, protocol), MODEL_JET_TAGGER,
                             EncodedBatches([batch], signature))  # fmt: skip
        try:
            assert client.infer(0) == 4  # the first passes through untouched
            with pytest.raises(Exception, match=reasons[fault]):
                client.infer(0)
        finally:
            client.close()


def test_sweep_and_locust_given_the_same_flags_record_the_same_target(server, tmp_path):
    flags = ["--url", server.http_url, "--protocol", "http", "--header", "X-Site:T2_US",
             "--model", MODEL_JET_TAGGER, "--batch", "16", "--timeout", "45",
             "--seed", "9"]  # fmt: skip
    assert main([*_sweep(server.http_url, tmp_path / "sweep"), *flags]) == 0
    command = locust_command(server, tmp_path / "locust", *flags, "--staircase", "1",
                             "--step-seconds", "2", "--event-scale", "1",
                             "--other-seconds", "0.1", "--preprocess-seconds", "0")  # fmt: skip
    done = run_locust(command)
    assert done.returncode == 0, done.stderr[-3000:]
    _, sweep = _only_run(tmp_path / "sweep")
    _, locust = _only_run(tmp_path / "locust")
    for run in (sweep, locust):
        assert (run.manifest.server.url, run.manifest.server.protocol) == (server.http_url, "http")
        assert run.manifest.server.model == MODEL_JET_TAGGER
    keys = ("protocol", "ssl", "headers", "timeout_s", "connect_timeout_s")
    assert {k: sweep.manifest.load.parameters[k] for k in keys} == {
        k: locust.manifest.load.parameters[k] for k in keys
    }
    assert sweep.manifest.load.parameters["headers"] == ["x-site"]
    same = ("source", "seed", "shapes", "datatypes", "batch")
    assert {k: sweep.manifest.workload.inputs[k] for k in same} == {
        k: locust.manifest.workload.inputs[k] for k in same
    }


def test_a_model_that_does_not_batch_sends_one_sample_without_n():
    signature = ModelSignature(
        (TensorSpec("x", "FP32", (3,)),), (TensorSpec("y", "FP32", (1,)),), max_batch_size=0
    )
    (batch,) = make_batches(signature, InputData("zero"), [1], seed=0)
    assert isinstance(batch, Batch) and batch.tensors[0].shape == (3,)
    with pytest.raises(SonicBenchError, match="does not batch"):
        signature.check_sendable(4)


def test_predict_and_check_take_the_second_models_sweep(server, tmp_path, capsys):
    argv = _sweep(server.grpc_url, tmp_path, "--model", MODEL_JET_TAGGER, "--batch", "32",
                  "--trials", "4", "--percentiles", "50", "--reference",
                  "--reference-seconds", "0.3")  # fmt: skip
    assert main(argv) == 0
    folder, _ = _only_run(tmp_path)
    capsys.readouterr()
    assert main(["predict", "--from", str(tmp_path), "--model", MODEL_JET_TAGGER,
                 "--batch-size", "32", "--protocol", "grpc", "--requests-per-event", "100",
                 "--event-scale", "0.1", "--json"]) == 0  # fmt: skip
    planned = json.loads(capsys.readouterr().out)["inputs"]
    assert planned["requests_per_event"] == 10 and planned["patches_per_event"] == 320
    # the test's windows are too short to settle every level: judged anyway, as told
    assert main(["check", str(folder), "--baseline", str(folder), "--allow-invalid"]) == 0
    verdicts = capsys.readouterr().out
    assert "inferences_per_s" in verdicts and "cannot judge" not in verdicts
