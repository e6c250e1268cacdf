"""Scripted peers for the engine's conformance suite: kept protocol state machines play
the server (`h2` for HTTP/2 and gRPC, `h11` for HTTP/1.1), and each test scripts what
they do on each connection, well-formed or not (raw frames where a peer must break a
rule the library will not break for it).

    with Peer(serve) as peer:            # serve(link) runs once per accepted connection
        client = InferClient(Endpoint(peer.url), MODEL, batches)

A peer answers Triton's infer requests for EmTrackMichelId with zero-filled outputs of
the right shapes, so the engine's own checks of an answer pass unless a test breaks it.
Every thread and socket a peer opens is closed when its `with` block ends.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import h11
import numpy as np
from tritonclient.grpc import service_pb2

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.model.emtrackmichel import PATCH_SHAPE, SIGNATURE

MODEL = "scripted"
WAIT_S = 10.0  # a peer waits no longer than this for anything: a test never hangs


def batches(patches: int = 2) -> EncodedBatches:
    """A request of `patches` zero patches (2: 18 KiB, over one 16 KiB frame)."""
    return EncodedBatches([np.zeros((patches, *PATCH_SHAPE), np.float32)])


def client(url: str, protocol: str = "grpc", **endpoint) -> InferClient:
    return InferClient(Endpoint(url, protocol, **endpoint), MODEL, batches())


@dataclass
class Link:
    """One accepted connection, its number among the peer's, and the peer's books."""

    sock: socket.socket
    number: int
    peer: Peer

    def recv(self) -> bytes:
        return self.sock.recv(1 << 16)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class Peer:
    """A TCP (optionally TLS) server on loopback; `serve(link)` runs in a thread of its
    own for each connection, and what it raises ends only that connection."""

    def __init__(
        self,
        serve: Callable[[Link], None],
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        handshake: Callable[[int], bool] = lambda number: True,
    ):
        self.serve = serve
        self.tls = tls
        self.handshake = handshake  # TLS on connection n; False: accepted, then silent
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self._listener.settimeout(0.1)
        port = self._listener.getsockname()[1]
        self.url = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.stopping = threading.Event()
        self.connections = 0
        self.processed = 0  # infer requests answered as served
        self.events: list[str] = []  # what the peer saw, for the test to read
        self.errors: list[str] = []  # what ended a connection on the peer's side
        self.lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Peer:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._accepting.join()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=WAIT_S)
        self._listener.close()

    def note(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def served(self) -> None:
        with self.lock:
            self.processed += 1

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._sockets.append(sock)
            with self.lock:
                number = self.connections
                self.connections += 1
            thread = threading.Thread(target=self._run, args=(sock, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, number: int) -> None:
        try:
            sock.settimeout(WAIT_S)
            if self.tls is not None:
                if not self.handshake(number):
                    self.note(f"connection {number}: no handshake")
                    self.stopping.wait()
                    return
                sock = self.tls.wrap_socket(sock, server_side=True)
                self._sockets.append(sock)
            self.serve(Link(sock, number, self))
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError, h11.ProtocolError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")  # the client's doing, or gone
        finally:
            with contextlib.suppress(OSError):
                sock.close()


# --- answers -------------------------------------------------------------------------


def _zero_outputs(batch: int) -> list[tuple[str, list[int], bytes]]:
    return [
        (spec.name, list(SIGNATURE.shape(spec, batch)), bytes(batch * spec.sample_bytes))
        for spec in SIGNATURE.outputs
    ]


def grpc_answer(request_message: bytes) -> bytes:
    """The framed ModelInferResponse of zero outputs for a framed ModelInferRequest."""
    request = service_pb2.ModelInferRequest.FromString(request_message[5:])
    batch = request.inputs[0].shape[0]
    response = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
    for name, shape, data in _zero_outputs(batch):
        response.outputs.add(name=name, datatype="FP32").shape.extend(shape)
        response.raw_output_contents.append(data)
    message = response.SerializeToString()
    return struct.pack(">BI", 0, len(message)) + message


def http_answer(body: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of Triton's binary-tensor answer for an infer request body."""
    header = json.loads(body[: _json_size(body)])
    batch = header["inputs"][0]["shape"][0]
    outputs = _zero_outputs(batch)
    text = json.dumps(
        {
            "model_name": MODEL,
            "outputs": [
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": shape,
                    "parameters": {"binary_data_size": len(data)},
                }
                for name, shape, data in outputs
            ],
        }
    ).encode()
    headers = [("Inference-Header-Content-Length", str(len(text)))]
    return headers, text + b"".join(data for _, _, data in outputs)


def _json_size(body: bytes) -> int:
    """Where the JSON header of a binary-tensor request ends (its braces balance)."""
    depth = 0
    for index, byte in enumerate(body):
        if byte == ord("{"):
            depth += 1
        elif byte == ord("}"):
            depth -= 1
            if depth == 0:
                return index + 1
    raise ValueError("no JSON header")


# --- HTTP/2 --------------------------------------------------------------------------


@dataclass
class H2:
    """h2's server side on one link: read requests, answer them, or write raw frames."""

    link: Link
    settings: dict = field(default_factory=dict)
    conn: h2.connection.H2Connection = field(init=False)
    bodies: dict[int, bytearray] = field(default_factory=dict)
    pending: list[h2.events.Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        # The settings the peer starts with (a later change: `conn.update_settings`).
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values=self.settings)
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        if data := self.conn.data_to_send():
            self.link.send(data)

    def raw(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        """A frame h2 would never write (a broken peer's)."""
        head = struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream)
        self.link.send(head + payload)

    def events(self) -> list[h2.events.Event]:
        """The next events (blocking until some arrive); [] once the client has gone."""
        if self.pending:
            events, self.pending = self.pending, []
            return events
        while True:  # bytes that make no event yet (a frame cut by a TLS record): read on
            data = self.link.recv()
            if not data:
                return []
            events = self.conn.receive_data(data)
            for event in events:
                if isinstance(event, h2.events.DataReceived):
                    self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                    length, stream = event.flow_controlled_length, event.stream_id
                    self.conn.acknowledge_received_data(length, stream)
            self.flush()
            if events:
                return events

    def request(self) -> tuple[int, bytes] | None:
        """The next whole request: its stream and body; None once the client has gone."""
        while True:
            events = self.events()
            if not events:
                return None
            for index, event in enumerate(events):
                if isinstance(event, h2.events.StreamEnded):
                    self.pending = events[index + 1 :]
                    return event.stream_id, bytes(self.bodies.pop(event.stream_id, b""))
                if isinstance(event, h2.events.ConnectionTerminated):
                    code = getattr(event.error_code, "name", event.error_code)
                    self.link.peer.note(f"GOAWAY {code}")
                    return None

    def answer(self, stream: int, message: bytes, status: bytes = b"0") -> None:
        """A gRPC answer: headers, the message, trailers."""
        headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        self.conn.send_headers(stream, headers)
        self.conn.send_data(stream, message)
        self.conn.send_headers(stream, [(b"grpc-status", status)], end_stream=True)
        self.flush()

    def serve_one(self) -> int | None:
        """Read one request and answer it as Triton would; its stream (None: gone)."""
        got = self.request()
        if got is None:
            return None
        stream, body = got
        self.answer(stream, grpc_answer(body))
        self.link.peer.served()
        return stream


def h2_serving(
    before: Callable[[H2], None] | None = None, settings: dict | None = None
) -> Callable[[Link], None]:
    """A well-behaved gRPC server (after `before`, if given) until the client goes."""

    def serve(link: Link) -> None:
        peer = H2(link, settings or {})
        if before is not None:
            before(peer)
        while peer.serve_one() is not None:
            pass

    return serve


# --- HTTP/1.1 ------------------------------------------------------------------------


class H11:
    """h11's server side on one link."""

    def __init__(self, link: Link):
        self.link = link
        self.conn = h11.Connection(h11.SERVER)

    def request(self) -> tuple[h11.Request, bytes] | None:
        request, body = None, bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = self.link.recv()
                self.conn.receive_data(data)
                if not data and self.conn.their_state is not h11.DONE:
                    return None
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None

    def send(self, *events) -> None:
        self.link.send(b"".join(self.conn.send(event) or b"" for event in events))

    def answer(self, status: int, headers, body: bytes, length: bool = True) -> None:
        headers = list(headers)
        if length:
            headers.append(("Content-Length", str(len(body))))
        self.send(
            h11.Response(status_code=status, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )

    def serve_one(self) -> bool:
        got = self.request()
        if got is None:
            return False
        _, body = got
        headers, answer = http_answer(body)
        self.answer(200, headers, answer)
        self.link.peer.served()
        self.conn.start_next_cycle()
        return True
