"""Sending a model's requests: gRPC, HTTP or system shared memory.

One `InferClient` per worker (connections are not shared between threads). Requests are
prepared once per batch and reused, so that the harness spends its time in the
transport, not in re-encoding the same inputs (perf_analyzer does the same).
tritonclient stays the client for everything else (`triton/client.py`: health, metadata,
statistics, shared-memory registration).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

import numpy as np

from sonic_bench.engine.answers import (
    ExpectedOutputs,
    Outputs,
    expected_per_batch,
    grpc_outputs,
    http_outputs,
)
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.engine.grpc_call import (
    GrpcCallError,
    RawInferChannel,
    serialized_requests,
    shared_memory_requests,
)
from sonic_bench.engine.http1 import (
    HttpInferError,
    RawHttpConnection,
    RequestBody,
    request_bodies,
    shared_memory_bodies,
)
from sonic_bench.engine.sockets import Connection
from sonic_bench.errors import first_line
from sonic_bench.model.emtrackmichel import SIGNATURE as EMTRACKMICHEL_SIGNATURE
from sonic_bench.model.signature import (
    NUMPY_TYPES,
    Batch,
    ModelSignature,
    WireInput,
    wire_inputs,
)
from sonic_bench.triton.client import admin_client
from sonic_bench.triton.shared_memory import SharedInputs, WorkerOutputs


class InferError(Exception):
    """A request that failed: the reason as the server or transport gave it."""


class EncodedBatches:
    """The request batches, prepared once and shared read-only by every worker: each
    transport's requests (and the shared-memory inputs) are built the first time a
    client asks for them.

    `batches` are `Batch`es of the model's inputs, or arrays for a model with one input
    (EmTrackMichelId's patches); `signature` the model's tensors as the server described
    them (EmTrackMichelId's by default)."""

    def __init__(
        self,
        batches: Sequence[Batch | np.ndarray],
        signature: ModelSignature = EMTRACKMICHEL_SIGNATURE,
    ):
        self.signature = signature
        self.batches = [b if isinstance(b, Batch) else Batch((b,), len(b)) for b in batches]
        self.sizes = [b.size for b in self.batches]
        self.output_names = tuple(spec.name for spec in signature.outputs)
        self._wire: list[tuple[WireInput, ...]] | None = None
        self._serialized: dict[str, list[bytes]] = {}
        self._bodies: list[RequestBody] | None = None
        self._shared: SharedInputs | None = None
        self._expected: dict[bool, list[ExpectedOutputs]] = {}
        self._lock = threading.RLock()  # workers start together; build each once

    def wire(self) -> list[tuple[WireInput, ...]]:
        """Every batch's inputs as bytes on the wire, encoded once."""
        with self._lock:
            if self._wire is None:
                self._wire = [wire_inputs(self.signature, b.tensors) for b in self.batches]
            return self._wire

    def expected(self, shared_memory: bool) -> list[ExpectedOutputs]:
        """What the answer to each batch must hold (with its data, unless in shared memory)."""
        with self._lock:
            if shared_memory not in self._expected:
                self._expected[shared_memory] = expected_per_batch(
                    self.signature, self.sizes, with_data=not shared_memory
                )
            return self._expected[shared_memory]

    def serialized(self, model: str) -> list[bytes]:
        """gRPC: the ModelInferRequest of every batch for `model`, serialized once."""
        with self._lock:
            if model not in self._serialized:
                self._serialized[model] = serialized_requests(model, self.wire(), self.output_names)
            return self._serialized[model]

    def bodies(self) -> list[RequestBody]:
        """HTTP: the infer request body of every batch (JSON header + binary), built once."""
        with self._lock:
            if self._bodies is None:
                self._bodies = request_bodies(self.wire(), self.output_names)
            return self._bodies

    def body_sizes(self) -> list[int]:
        """Bytes of every batch's HTTP request body, without building them."""
        return [sum(len(t.data) for t in inputs) for inputs in self.wire()]

    def shared_inputs(self, endpoint: Endpoint) -> SharedInputs:
        """System shared memory: every batch written once into a region on this machine,
        registered with the server; removed by `close()`."""
        with self._lock:
            if self._shared is None:
                data = [[t.data for t in inputs] for inputs in self.wire()]
                self._shared = SharedInputs(admin_client(endpoint), data)
            return self._shared

    def output_layout(self) -> list[tuple[str, int, type]]:
        """Each output's bytes per sample and numpy type, for a worker's output region."""
        self.signature.check_shared_memory()
        layout = []
        for spec in self.signature.outputs:
            kind = np.uint16 if spec.datatype == "BF16" else NUMPY_TYPES[spec.datatype]
            layout.append((spec.name, spec.sample_bytes, kind))
        return layout

    def close(self) -> None:
        with self._lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None

    def __enter__(self) -> EncodedBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.batches)


class InferClient:
    """One worker's connection: infer(batch_index) sends that batch and waits.

    Every request is prepared once and sent as bytes on a connection of the worker's own
    (`grpc_call`, `http1`). With shared memory the inputs are written once into a
    region (`shared_memory`), and the requests only name where their batch lies and
    where the worker's answers go.

    Non-blocking (`set_blocking(False)`), an event loop drives the same request in steps,
    many clients from one thread: `begin(index)`, then `flush()` while `wants_write` and
    `advance()` when the socket is readable, until it returns the batch size.

    `on_answer(index, outputs)`: every answer's outputs as arrays (the accuracy mode);
    without it they are judged (names, types, shapes, sizes) and never decoded."""

    def __init__(
        self,
        endpoint: Endpoint,
        model: str,
        batches: EncodedBatches,
        on_answer: Callable[[int, Outputs], None] | None = None,
    ):
        self.endpoint = endpoint
        self.model = model
        self.batches = batches
        self.on_answer = on_answer
        self._http_answer = None  # the last HTTP answer, for on_answer
        self._shm: WorkerOutputs | None = None
        self._raw: RawInferChannel | None = None
        self._http: RawHttpConnection | None = None
        self._index = -1  # the batch in flight
        self._expected = batches.expected(endpoint.shared_memory)
        grpc_transport = endpoint.protocol == "grpc"
        if endpoint.shared_memory:
            layout = batches.output_layout()
            shared = batches.shared_inputs(endpoint)
            self._shm = WorkerOutputs(
                admin_client(endpoint), shared.prefix, layout, max(batches.sizes)
            )
            inputs = shared.placements
            wire = batches.wire()
            answers = [self._shm.placements(size) for size in batches.sizes]
            if grpc_transport:
                self._requests = shared_memory_requests(model, wire, inputs, answers)
            else:
                self._bodies = shared_memory_bodies(wire, inputs, answers)
        elif grpc_transport:
            self._requests = batches.serialized(model)
        else:
            self._bodies = batches.bodies()
        if grpc_transport:
            self._raw = RawInferChannel(
                endpoint.url,
                endpoint.tls_context(("h2",)),
                endpoint.headers,
                endpoint.timeout_s,
                endpoint.connect_timeout_s,
            )
            self._connection: Connection = self._raw.connection
        else:
            self._http = RawHttpConnection(
                endpoint.url,
                model,
                endpoint.tls_context(("http/1.1",)),
                endpoint.headers,
                endpoint.timeout_s,
                endpoint.connect_timeout_s,
            )
            self._connection = self._http

    def infer(self, index: int) -> int:
        """Send batch `index` and wait; returns its size. Raises InferError on failure."""
        try:
            if self._raw is not None:
                self._raw.infer(self._requests[index], self._expected[index])
            else:
                self._http_answer = self._http.infer(self._bodies[index], self._expected[index])
            return self._answered(index)
        except Exception as e:
            raise _infer_error(e) from None

    def begin(self, index: int) -> None:
        """Start sending batch `index` (what the socket takes now; `flush` the rest)."""
        try:
            self._index = index
            if self._raw is not None:
                self._raw.begin(self._requests[index])
            else:
                self._http.begin(self._bodies[index])
            self._connection.flush()
        except Exception as e:
            raise _infer_error(e) from None

    def flush(self) -> bool:
        """Write more of the request; True once all of it went."""
        try:
            return self._connection.flush()
        except Exception as e:
            raise _infer_error(e) from None

    def advance(self) -> int | None:
        """Read what has arrived: the batch size once the answer is whole, else None.
        Raises InferError on failure."""
        try:
            if self._raw is not None:
                if not self._raw.advance(self._expected[self._index]):
                    return None
            else:
                answer = self._http.advance()
                if answer is None:
                    return None
                answer.check(self._expected[self._index])
                self._http_answer = answer
            return self._answered(self._index)
        except Exception as e:
            raise _infer_error(e) from None

    @property
    def wants_write(self) -> bool:
        return self._connection.wants_write

    @property
    def retried(self) -> int:
        """Requests sent again on a new connection because the server had not processed
        them (an HTTP/2 drain: GOAWAY, REFUSED_STREAM); each is one request, counted once."""
        return self._raw.connection.retried if self._raw is not None else 0

    def on_idle_readable(self) -> bool:
        """The server spoke while no request was out (a GOAWAY, a close): taken in now, so
        that the next request does not meet it. False once the connection is gone."""
        return self._connection.on_idle_readable()

    def connect_overdue(self) -> str | None:
        """Why the request in flight fails: its connection was not made in time."""
        return self._connection.connect_overdue()

    def connection_key(self) -> tuple[int, int]:
        """The connection's socket and how many it has opened: a new value means a new
        socket, even one that reuses a closed one's file descriptor (-1 before the first)."""
        return self._connection.fileno(), self._connection.opened

    def set_blocking(self, blocking: bool) -> None:
        self._connection.set_blocking(blocking)

    def _answered(self, index: int) -> int:
        size = self.batches.sizes[index]
        if self._shm is not None and self.on_answer is None:
            self._shm.first_output(size)
        if self.on_answer is not None:
            self.on_answer(index, self._outputs(size))
        return size

    def _outputs(self, size: int) -> Outputs:
        if self._shm is not None:
            signature = self.batches.signature
            shapes = [signature.shape(spec, size) for spec in signature.outputs]
            read = self._shm.read_outputs(size, shapes)
            for spec in signature.outputs:
                if spec.datatype == "BF16":  # raw bits in the region
                    bits = read[spec.name].astype(np.uint32) << 16
                    read[spec.name] = bits.view(np.float32)
            return read
        if self._raw is not None:
            return grpc_outputs(self._raw.last_message())
        return http_outputs(self._http_answer.body, self._http_answer.header_size)

    def close(self) -> None:
        for connection in (self._raw, self._http, self._shm):
            if connection is not None:
                with contextlib.suppress(Exception):  # a broken one must not hide the error
                    connection.close()


# What refuses a call before it is served: a gateway's token check, rate limiter or
# overload shedding (SuperSONIC's Envoy), or a server that is not taking requests. Told
# apart from server errors: the server did not fail these, it never ran them.
REJECTION_PREFIXES = (
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "HTTP 401",
    "HTTP 403",
    "HTTP 429",
    "HTTP 503",
)


def is_rejection(error: str | None) -> bool:
    """Whether a failed request's reason says it was refused, not served."""
    return error is not None and error.startswith(REJECTION_PREFIXES)


def _infer_error(error: Exception) -> InferError:
    """Every way a request can fail, as one InferError with the reason."""
    if isinstance(error, InferError):
        return error
    if isinstance(error, HttpInferError):
        return InferError(first_line(error))
    if isinstance(error, GrpcCallError):
        return InferError(str(error))
    return InferError(f"{type(error).__name__}: {first_line(error)}")  # socket, HTTP/2
