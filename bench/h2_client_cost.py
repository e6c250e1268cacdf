"""Why h2 plays the server in the conformance suite and not the client in the engine:
the client CPU h2's state machine spends on one unary gRPC call (headers, a small
message, the answer's headers, message and trailers, flow control acknowledged), with no
socket in between (an h2 server in the same process answers). The engine's own framing
costs ~30 us a call on this machine kind (DESIGN.md); at shared-memory speeds (~250 us
a request at the server) every 10 us is ~4% of the figure.

    .venv/bin/python bench/h2_client_cost.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import time

import h2.config
import h2.connection
import h2.events

MESSAGE = b"\0\0\0\0\x20" + b"x" * 32
REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/inference.GRPCInferenceService/ModelInfer"),
    (b":authority", b"127.0.0.1:8001"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


def _pair():
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    client.initiate_connection()
    server.initiate_connection()
    for _ in range(2):
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    return client, server


def _acknowledge(conn, events) -> None:
    for event in events:
        if isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)


def client_seconds_per_call(calls: int) -> float:
    client, server = _pair()
    spent = 0.0
    for _ in range(calls):
        began = time.perf_counter()
        stream = client.get_next_available_stream_id()
        client.send_headers(stream, REQUEST)
        client.send_data(stream, MESSAGE, end_stream=True)
        sent = client.data_to_send()
        spent += time.perf_counter() - began
        _acknowledge(server, server.receive_data(sent))
        server.send_headers(stream, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        server.send_data(stream, MESSAGE)
        server.send_headers(stream, [(b"grpc-status", b"0")], end_stream=True)
        answer = server.data_to_send()
        began = time.perf_counter()
        _acknowledge(client, client.receive_data(answer))
        acknowledgements = client.data_to_send()
        spent += time.perf_counter() - began
        server.receive_data(acknowledgements)
    return spent / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    client_seconds_per_call(200)  # warm-up
    print(f"h2 as the client: {client_seconds_per_call(args.calls) * 1e6:.0f} us of CPU a call")


if __name__ == "__main__":
    main()
