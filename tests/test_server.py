"""The embedded tritonserver serving EmTrackMichelId (real server, real clients)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from helpers import REPOSITORY, server_config
from tritonclient.utils import InferenceServerException

from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.baseline import infer as infer_in_process
from sonic_bench.measure.baseline import open_session
from sonic_bench.metrics.exposition import model_value, scrape
from sonic_bench.model.emtrackmichel import INPUT_NAME, MICHEL_OUTPUT, TRACK_EM_OUTPUT
from sonic_bench.model.repository import (
    MODEL_CALIBRATION,
    MODEL_DYNAMIC_BATCHING,
    MODEL_NO_DYNAMIC_BATCHING,
)
from sonic_bench.triton.server import EmbeddedServer


def grpc_infer(server, model: str, patches: np.ndarray):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput(INPUT_NAME, list(patches.shape), "FP32")
    tensor.set_data_from_numpy(patches)
    result = client.infer(model, [tensor])
    return result.as_numpy(TRACK_EM_OUTPUT), result.as_numpy(MICHEL_OUTPUT)


@pytest.mark.parametrize("model", [MODEL_DYNAMIC_BATCHING, MODEL_NO_DYNAMIC_BATCHING])
def test_served_outputs_equal_in_process_onnxruntime(server, repository, patches, model):
    softmax, sigmoid = grpc_infer(server, model, patches)
    session = open_session(repository / "embedded" / model / "1" / "model.onnx", threads=0)
    expected_softmax, expected_sigmoid = infer_in_process(session, patches, 256)
    assert np.max(np.abs(softmax - expected_softmax)) <= 1e-5
    assert np.max(np.abs(sigmoid - expected_sigmoid)) <= 1e-5
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, atol=1e-5)
    assert ((sigmoid > 0) & (sigmoid < 1)).all()


def test_http_serves_the_same_outputs(server, patches):
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput(INPUT_NAME, list(patches.shape), "FP32")
    tensor.set_data_from_numpy(patches, binary_data=True)
    result = client.infer(MODEL_DYNAMIC_BATCHING, [tensor])
    softmax, _ = grpc_infer(server, MODEL_DYNAMIC_BATCHING, patches)
    np.testing.assert_array_equal(result.as_numpy(TRACK_EM_OUTPUT), softmax)


def test_calibration_model_returns_zeros_of_the_right_shape(server, patches):
    softmax, sigmoid = grpc_infer(server, MODEL_CALIBRATION, patches)
    assert softmax.shape == (len(patches), 3) and sigmoid.shape == (len(patches), 1)
    assert not softmax.any() and not sigmoid.any()


def _batch_counts(server, model: str) -> dict[int, int]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return {
        int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])
    }


def _settled_batch_counts(server, model: str, before: dict[int, int], inferences: int):
    """Triton counts an execution just after it answers: poll (bounded) until all are in."""
    deadline = time.monotonic() + 5.0
    while True:
        counts = _batch_counts(server, model)
        new = _new_executions(before, counts)
        if sum(size * n for size, n in new.items()) >= inferences or time.monotonic() > deadline:
            return new
        time.sleep(0.05)


def _concurrent_requests(server, model: str, patches: np.ndarray, clients: int, each: int):
    errors: list[Exception] = []

    def worker() -> None:
        try:
            for _ in range(each):
                grpc_infer(server, model, patches)
        except Exception as e:  # reported below, a thread cannot raise into the test
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def _new_executions(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    return {size: n - before.get(size, 0) for size, n in after.items() if n > before.get(size, 0)}


def test_dynamic_batching_merges_concurrent_requests(server, patches):
    request = patches[:3]
    before = _batch_counts(server, MODEL_DYNAMIC_BATCHING)
    _concurrent_requests(server, MODEL_DYNAMIC_BATCHING, request, clients=16, each=8)
    executed = _settled_batch_counts(server, MODEL_DYNAMIC_BATCHING, before, 16 * 8 * len(request))
    assert max(executed) > len(request), executed
    assert all(size % len(request) == 0 for size in executed)


def test_without_dynamic_batching_each_request_runs_alone(server, patches):
    request = patches[:3]
    before = _batch_counts(server, MODEL_NO_DYNAMIC_BATCHING)
    _concurrent_requests(server, MODEL_NO_DYNAMIC_BATCHING, request, clients=16, each=4)
    executed = _settled_batch_counts(
        server, MODEL_NO_DYNAMIC_BATCHING, before, 16 * 4 * len(request)
    )
    assert executed == {len(request): 16 * 4}


def _still_serves(server, patches) -> None:
    softmax, _ = grpc_infer(server, MODEL_CALIBRATION, patches[:2])
    assert softmax.shape == (2, 3)


def test_request_above_max_batch_size_is_refused_clearly(server, patches):
    # A 65,537-patch request is 604 MB: pass it through a sparse shared-memory region
    # so that the test costs no memory; the server refuses it on the batch size alone.
    byte_size = 65_537 * 48 * 48 * 4
    client = grpcclient.InferenceServerClient(server.grpc_url)
    handle = shm.create_shared_memory_region("sonic_too_big", "/sonic_too_big", byte_size)
    try:
        client.register_system_shared_memory("sonic_too_big", "/sonic_too_big", byte_size)
        tensor = grpcclient.InferInput(INPUT_NAME, [65_537, 48, 48, 1], "FP32")
        tensor.set_shared_memory("sonic_too_big", byte_size)
        with pytest.raises(InferenceServerException, match="batch-size must be <= 65536"):
            client.infer(MODEL_CALIBRATION, [tensor])
    finally:
        client.unregister_system_shared_memory("sonic_too_big")
        shm.destroy_shared_memory_region(handle)
    _still_serves(server, patches)


def test_wrong_input_shape_is_refused_clearly(server, patches):
    with pytest.raises(InferenceServerException, match=r"unexpected shape.*\[-1,48,48,1\]"):
        grpc_infer(server, MODEL_DYNAMIC_BATCHING, np.zeros((4, 48, 47, 1), np.float32))
    _still_serves(server, patches)


def test_unknown_model_is_refused_clearly(server, patches):
    with pytest.raises(InferenceServerException, match="unknown model"):
        grpc_infer(server, "no_such_model", patches[:2])
    _still_serves(server, patches)


def test_stop_leaves_no_server_or_stub_processes(repository):
    server = EmbeddedServer(server_config()).start()
    try:
        root = psutil.Process(server.pid)
        family = [root, *root.children(recursive=True)]
        stubs = [p for p in family if "triton_python_backend_stub" in " ".join(p.cmdline())]
        models = list((REPOSITORY / "embedded").glob("*/config.pbtxt"))
        assert len(stubs) == len(models)  # one per model instance
    finally:
        server.stop()
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive and len(gone) == len(family)


def test_stop_with_requests_in_flight_answers_what_the_server_still_answers(repository):
    """The stop cuts Triton's shutdown short only once nothing more can be answered: the
    request executing when it comes is answered; a queued one is answered or refused by
    Triton itself (gRPC: the model is unloading), never cut off with the connection."""
    model = MODEL_NO_DYNAMIC_BATCHING  # one instance, no batching: one executes, two queue
    server = EmbeddedServer(server_config(models=(model,))).start()
    answers, errors = [], []

    def send() -> None:
        try:
            answers.append(grpc_infer(server, model, np.zeros((1024, 48, 48, 1), np.float32)))
        except InferenceServerException as e:
            errors.append(str(e))

    senders = [threading.Thread(target=send) for _ in range(3)]
    try:
        for sender in senders:
            sender.start()
        while _pending(server, model) < 2:  # polling the server's own count
            time.sleep(0.01)
    finally:
        server.stop()
        for sender in senders:
            sender.join(timeout=60)
    assert answers and all(sigmoid.shape == (1024, 1) for _, sigmoid in answers)
    assert len(answers) + len(errors) == 3
    assert all("StatusCode.NOT_FOUND" in e for e in errors), errors


def _pending(server, model: str) -> float:
    return model_value(scrape(server.metrics_url), "nv_inference_pending_request_count", model)


def test_port_in_use_is_one_clear_error(repository):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SonicBenchError, match=f"port {port} .*already in use.*--grpc-port"):
            EmbeddedServer(server_config(grpc_port=port)).start()


def test_model_that_fails_to_load_quotes_the_servers_reason(tmp_path):
    model = tmp_path / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [{ name: "x", data_type: TYPE_FP32, dims: [1] }]\n'
        'output [{ name: "y", data_type: TYPE_FP32, dims: [1] }]\n'
    )
    (model / "1" / "model.py").write_text("raise RuntimeError('weights are missing')\n")
    with pytest.raises(
        SonicBenchError, match=r"model 'broken' failed to load.*weights are missing"
    ):
        EmbeddedServer(server_config(repository=tmp_path)).start()


def test_missing_repository_is_one_clear_error(tmp_path):
    with pytest.raises(SonicBenchError, match=r"model repository .* not found"):
        EmbeddedServer(server_config(repository=tmp_path / "nowhere")).start()
