"""Servers that misbehave the way real deployments do, scripted on loopback.

Each stands in front of a real tritonserver and passes every call through, except the
inference requests that its script picks: those it fails, never answers, answers a byte a
second, answers and then drops the connection, cuts off mid-answer, (gRPC) answers OK
with no output tensor at all, answers OK with an output dropped, reshaped or retyped
(`drop`, `reshape`, `retype`), or answers with the previous request's answer (`stale`: a
well-formed answer for the wrong request, as a mixed-up cache or proxy gives). What a
client of the real server sees is real; only the fault is scripted (a real Triton cannot
be made to fail 1 request in 20).

    with HostileHttp(server.http_url, every(2, "fail")) as front:
        ... sweep --url front.url --protocol http ...
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Literal

import grpc
import h11
from peers import Peer
from tritonclient.grpc import service_pb2

Fault = Literal[
    "ok",
    "fail",
    "silent",
    "trickle",
    "close",
    "truncate",
    "empty",
    "drop",
    "reshape",
    "retype",
    "stale",
]
TAMPERED = ("drop", "reshape", "retype")  # a real answer, changed as a broken server would
Script = Callable[[int], Fault]  # the n-th inference request (from 0) -> what to do


def every(n: int, fault: Fault) -> Script:
    """`fault` on every n-th inference request, the others passed through."""
    return lambda number: fault if number % n == n - 1 else "ok"


def always(fault: Fault) -> Script:
    return lambda number: fault


class _Front:
    def __init__(self, script: Script):
        self.script = script
        self.stopping = threading.Event()
        self.infer_requests = 0
        self.faults: dict[str, int] = {}
        self._lock = threading.Lock()
        self._previous = None  # the last inference answer passed through

    def _swap(self, fault: Fault, answer):
        """The answer to send: the previous one for `stale` (once there is one); the
        real one is kept as the next stale answer."""
        with self._lock:
            previous, self._previous = self._previous, answer
        return previous if fault == "stale" and previous is not None else answer

    def _next_fault(self) -> Fault:
        with self._lock:
            fault = self.script(self.infer_requests)
            self.infer_requests += 1
            self.faults[fault] = self.faults.get(fault, 0) + 1
            return fault

    def _hold(self) -> None:
        """A server that read the request and says nothing, until the test ends."""
        self.stopping.wait()


class HostileHttp(_Front):
    """HTTP/1.1 (KServe v2 REST) in front of Triton's HTTP port."""

    def __init__(self, upstream: str, script: Script):
        super().__init__(script)
        self.upstream = upstream.split("://")[-1]
        # The loopback server itself is the conformance suite's (threads, sockets, close).
        self._peer = Peer(lambda link: self._serve(link.sock))
        self.url = self._peer.url

    def __enter__(self) -> HostileHttp:
        self._peer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # a held answer lets go first
        self._peer.__exit__(*exc)

    def _serve(self, sock: socket.socket) -> None:
        upstream = http.client.HTTPConnection(self.upstream, timeout=60)
        peer = h11.Connection(h11.SERVER)
        try:
            while not self.stopping.is_set():
                request, body = self._read_request(sock, peer)
                if request is None:
                    return
                fault = "ok"
                if request.target.endswith(b"/infer"):
                    fault = self._next_fault()
                if fault == "silent":
                    return self._hold()
                if fault == "fail":
                    status, headers, answer = 500, [], b'{"error":"injected fault"}'
                else:
                    status, headers, answer = self._forward(upstream, request, body)
                if fault in TAMPERED and status == 200:
                    headers, answer = _tampered_http(fault, headers, answer)
                if request.target.endswith(b"/infer") and status == 200:
                    status, headers, answer = self._swap(fault, (status, headers, answer))
                wire = self._answer(peer, status, headers, answer)
                if fault == "truncate":  # half the answer, then gone
                    sock.sendall(wire[: len(wire) // 2])
                    return
                if fault == "trickle":
                    for i in range(len(wire)):
                        if self.stopping.wait(1.0):
                            return
                        sock.sendall(wire[i : i + 1])
                else:
                    sock.sendall(wire)
                if fault == "close":
                    return  # answered, then gone: the client's next request meets a reset
                peer.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return
        finally:
            upstream.close()
            sock.close()

    @staticmethod
    def _read_request(sock, peer) -> tuple[h11.Request | None, bytes]:
        request, body = None, bytearray()
        while True:
            event = peer.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(1 << 16)
                if not data:
                    return None, b""
                peer.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    @staticmethod
    def _forward(upstream, request: h11.Request, body: bytes):
        headers = {k.decode(): v.decode() for k, v in request.headers if k != b"host"}
        upstream.request(request.method.decode(), request.target.decode(), body, headers)
        response = upstream.getresponse()
        answer = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() != "content-length"]
        return response.status, kept, answer

    @staticmethod
    def _answer(peer, status: int, headers, body: bytes) -> bytes:
        headers = [*headers, ("Content-Length", str(len(body)))]
        return (
            peer.send(h11.Response(status_code=status, headers=headers))
            + peer.send(h11.Data(data=body))
            + peer.send(h11.EndOfMessage())
        )


class HostileGrpc(_Front):
    """gRPC in front of Triton's gRPC port: every method passed through as bytes."""

    def __init__(self, upstream: str, script: Script):
        super().__init__(script)
        self._channel = grpc.insecure_channel(
            upstream.split("://")[-1],
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32),
            handlers=[_Passthrough(self)],
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.url = f"127.0.0.1:{port}"

    def __enter__(self) -> HostileGrpc:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.stop(grace=None).wait(10)
        self._channel.close()

    def call(self, method: str, request: bytes, context) -> bytes:
        fault = "ok"
        if method.endswith("/ModelInfer"):
            fault = self._next_fault()
        if fault == "silent":
            while not self.stopping.is_set() and context.is_active():
                time.sleep(0.05)
            context.abort(grpc.StatusCode.UNAVAILABLE, "test ended")
        if fault == "fail":
            context.abort(grpc.StatusCode.INTERNAL, "injected fault")
        if fault == "empty":  # status OK, an answer without any output tensor
            return b""
        forward = self._channel.unary_unary(method)
        metadata = [(k, v) for k, v in context.invocation_metadata() if not k.startswith(":")]
        answer = forward(request, metadata=metadata, timeout=60)
        if fault in TAMPERED:
            response = service_pb2.ModelInferResponse.FromString(answer)
            _tamper(fault, response.outputs, response.raw_output_contents)
            return response.SerializeToString()
        return self._swap(fault, answer) if method.endswith("/ModelInfer") else answer


def _tamper(fault: Fault, outputs, contents) -> None:
    """Drop the last output, or change the first one's shape or datatype."""
    if fault == "drop":
        del outputs[-1]
        if len(contents) > len(outputs):
            del contents[-1]
    elif fault == "reshape":
        outputs[0].shape[-1] += 1
    else:
        outputs[0].datatype = "FP64"


class _JsonTensor:
    """A KServe v2 JSON output with the attributes `_tamper` changes."""

    def __init__(self, entry: dict):
        self.entry = entry
        self.shape = entry["shape"]

    @property
    def datatype(self):
        return self.entry["datatype"]

    @datatype.setter
    def datatype(self, value):
        self.entry["datatype"] = value


def _tampered_http(fault: Fault, headers, answer: bytes):
    names = {k.lower(): k for k, _ in headers}
    key = names.get("inference-header-content-length")
    size = int(dict(headers)[key]) if key else len(answer)
    header, binary = json.loads(answer[:size]), answer[size:]
    outputs = header["outputs"]
    if fault == "drop":  # its binary data goes too: the answer stays self-consistent
        last = outputs.pop()
        binary = binary[: len(binary) - last.get("parameters", {}).get("binary_data_size", 0)]
    else:
        _tamper(fault, [_JsonTensor(o) for o in outputs], [])
    text = json.dumps(header).encode()
    kept = [(k, v) for k, v in headers if k.lower() != "inference-header-content-length"]
    if key:
        kept.append((key, str(len(text))))
    return kept, text + binary


class _Passthrough(grpc.GenericRpcHandler):
    def __init__(self, front: HostileGrpc):
        self.front = front

    def service(self, details):
        method = details.method
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self.front.call(method, request, context)
        )
