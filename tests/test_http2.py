"""The native engine's own HTTP/2 connection for gRPC, against the real server."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from sonic_bench.engine.client import EncodedBatches, InferClient, InferError
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.engine.grpc_call import RawInferChannel, serialized_requests
from sonic_bench.engine.http2 import DEFAULT_WINDOW
from sonic_bench.model.emtrackmichel import INPUT_NAME, TRACK_EM_OUTPUT
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_NO_DYNAMIC_BATCHING

OUTPUTS = (TRACK_EM_OUTPUT,)


def test_a_request_larger_than_the_servers_windows_arrives_whole(server, patches):
    """2,300 patches are 21 MB, hundreds of times the window the server first grants:
    sent under its flow control, and answered as tritonclient's own call is answered."""
    batch = np.resize(patches, (2300, *patches.shape[1:]))
    encoded = EncodedBatches([batch])
    (request,) = serialized_requests(MODEL_NO_DYNAMIC_BATCHING, encoded.wire(), OUTPUTS)
    assert len(request) > 300 * DEFAULT_WINDOW
    channel = RawInferChannel(server.grpc_url, None, {}, 60.0)
    try:
        channel.begin(request)
        answer = channel.connection.finish(channel.connection.advance)
    finally:
        channel.close()
    ours = service_pb2.ModelInferResponse.FromString(answer.data[5:])
    softmax = np.frombuffer(ours.raw_output_contents[0], np.float32).reshape(-1, 3)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput(INPUT_NAME, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    theirs = client.infer(MODEL_NO_DYNAMIC_BATCHING, [tensor]).as_numpy(TRACK_EM_OUTPUT)
    np.testing.assert_array_equal(softmax, theirs)


@pytest.mark.parametrize(
    ("model", "reason"),
    [("no_such_model", r"NOT_FOUND: .*unknown model"), (MODEL_CALIBRATION, None)],
)
def test_grpc_status_and_message_reach_the_user(server, patches, model, reason):
    batches = EncodedBatches([patches[:4]])
    client = InferClient(Endpoint(server.grpc_url), model, batches)
    try:
        if reason is None:
            assert client.infer(0) == 4
        else:
            with pytest.raises(InferError, match=reason):
                client.infer(0)
    finally:
        client.close()


def test_a_connection_closed_between_requests_is_opened_again(server, patches):
    """Found closed before the next request (a server's idle timeout, a restart): the
    request goes on a new connection instead of failing (mid-request breaks fail: the
    conformance suite's scripted peers)."""
    batches = EncodedBatches([patches[:4]])
    client = InferClient(Endpoint(server.grpc_url), MODEL_CALIBRATION, batches)
    try:
        assert client.infer(0) == 4
        client._raw.connection.socket.shutdown(socket.SHUT_RDWR)
        assert client.infer(0) == 4
        assert client._raw.connection.opened == 2
    finally:
        client.close()
