"""Sending EmTrackMichelId requests through tritonclient: gRPC, HTTP or system shared memory.

One `InferClient` per worker (tritonclient clients are not shared between threads).
Inputs are encoded once per batch and reused, so that the harness spends its time in
the transport, not in re-encoding the same patches (perf_analyzer does the same).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from sonic_bench.errors import SonicBenchError
from sonic_bench.model.emtrackmichel import INPUT_NAME, MICHEL_OUTPUT, TRACK_EM_OUTPUT
from sonic_bench.triton.grpc_raw import RawInferChannel, serialized_requests

Protocol = Literal["grpc", "http"]
OUTPUTS = ((TRACK_EM_OUTPUT, 3), (MICHEL_OUTPUT, 1))
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Endpoint:
    """Where the server is and how to talk to it."""

    url: str  # host:port
    protocol: Protocol = "grpc"
    ssl: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    shared_memory: bool = False
    timeout_s: float = 600.0


class ServerUnavailable(SonicBenchError):
    """The server stopped answering in the middle of a measurement."""


class InferError(Exception):
    """A request that failed: the reason as the server or transport gave it."""


def _grpc_client(endpoint: Endpoint):
    return grpcclient.InferenceServerClient(endpoint.url, ssl=endpoint.ssl)


def _http_client(endpoint: Endpoint, concurrency: int = 1):
    return httpclient.InferenceServerClient(
        endpoint.url,
        ssl=endpoint.ssl,
        concurrency=concurrency,
        connection_timeout=endpoint.timeout_s,
        network_timeout=endpoint.timeout_s,
    )


def admin_client(endpoint: Endpoint):
    return _grpc_client(endpoint) if endpoint.protocol == "grpc" else _http_client(endpoint)


def check_server(endpoint: Endpoint, model: str) -> dict:
    """Fail with one clear line unless the server is live and `model` is ready."""
    client = admin_client(endpoint)
    try:
        live = client.is_server_live(headers=endpoint.headers)
    except Exception as e:  # transport errors come in many types
        raise SonicBenchError(
            f"cannot reach Triton at {endpoint.url} over {endpoint.protocol} ({_short(e)}): "
            "check --url and that the server runs"
        ) from None
    if not live:
        raise SonicBenchError(f"Triton at {endpoint.url} is not live")
    try:
        ready = client.is_model_ready(model, headers=endpoint.headers)
    except InferenceServerException as e:
        raise SonicBenchError(f"model {model!r} on {endpoint.url}: {_short(e)}") from None
    if not ready:
        raise SonicBenchError(
            f"model {model!r} is not ready on {endpoint.url}: check the name (--model) "
            "and the server's model repository"
        )
    if endpoint.protocol == "grpc":
        metadata = client.get_server_metadata(headers=endpoint.headers, as_json=True)
        config = client.get_model_config(model, headers=endpoint.headers, as_json=True)["config"]
    else:
        metadata = client.get_server_metadata(headers=endpoint.headers)
        config = client.get_model_config(model, headers=endpoint.headers)
    return {"triton_version": metadata.get("version"), "model_config": config}


def _short_details(error: grpc.RpcError) -> str:
    details = error.details() if hasattr(error, "details") else str(error)
    return (details or "").strip().splitlines()[0] if details else type(error).__name__


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class EncodedBatches:
    """The request batches, encoded once and shared read-only by every worker."""

    def __init__(self, protocol: Protocol, batches: Sequence[np.ndarray], shared_memory: bool):
        self.module = grpcclient if protocol == "grpc" else httpclient
        self.arrays = list(batches)
        self.sizes = [len(b) for b in batches]
        # With shared memory the patches are written into the region per request instead.
        self.inputs = None if shared_memory else [self._encode(b) for b in batches]
        self.outputs = self._requested_outputs()
        self._serialized: dict[str, list[bytes]] = {}

    def serialized(self, model: str) -> list[bytes]:
        """gRPC: the ModelInferRequest of every batch for `model`, serialized once."""
        if model not in self._serialized:
            names = [name for name, _ in OUTPUTS]
            self._serialized[model] = serialized_requests(model, self.arrays, names)
        return self._serialized[model]

    def __len__(self) -> int:
        return len(self.arrays)

    def _encode(self, batch: np.ndarray):
        tensor = self.module.InferInput(INPUT_NAME, list(batch.shape), "FP32")
        if self.module is httpclient:
            tensor.set_data_from_numpy(batch, binary_data=True)
        else:
            tensor.set_data_from_numpy(batch)
        return tensor

    def _requested_outputs(self):
        if self.module is grpcclient:
            return [grpcclient.InferRequestedOutput(name) for name, _ in OUTPUTS]
        return [httpclient.InferRequestedOutput(name, binary_data=True) for name, _ in OUTPUTS]


class InferClient:
    """One worker's connection: infer(batch_index) sends that batch and waits."""

    def __init__(self, endpoint: Endpoint, model: str, batches: EncodedBatches):
        self.endpoint = endpoint
        self.model = model
        self.batches = batches
        self._grpc = endpoint.protocol == "grpc"
        self._client = _grpc_client(endpoint) if self._grpc else _http_client(endpoint)
        self._shm: _SharedMemory | None = None
        self._raw: RawInferChannel | None = None
        if endpoint.shared_memory:
            self._shm = _SharedMemory(self._client, max(batches.sizes))
        elif self._grpc:
            self._requests = batches.serialized(model)
            self._raw = RawInferChannel(
                endpoint.url, endpoint.ssl, endpoint.headers, endpoint.timeout_s
            )

    def infer(self, index: int) -> int:
        """Send batch `index`; returns its size. Raises InferError on failure."""
        try:
            if self._raw is not None:
                response = self._raw.infer(self._requests[index])
                if len(response.raw_output_contents) != len(OUTPUTS):
                    raise InferError("response has no output tensor")
                return self.batches.sizes[index]
            if self._shm is not None:
                batch = self.batches.arrays[index]
                inputs, outputs = self._shm.prepare(self.batches.module, batch)
            else:
                inputs, outputs = [self.batches.inputs[index]], self.batches.outputs
            # A server that hangs must not hang the harness: bounded like a real client.
            timeout = {"client_timeout": self.endpoint.timeout_s} if self._grpc else {}
            result = self._client.infer(
                self.model,
                inputs,
                outputs=outputs,
                headers=self.endpoint.headers or None,
                **timeout,
            )
            if self._shm is not None:
                self._shm.read_outputs(self.batches.sizes[index])
            elif result.as_numpy(TRACK_EM_OUTPUT) is None:
                raise InferError("response has no output tensor")
        except InferenceServerException as e:
            raise InferError(_short(e)) from None
        except InferError:
            raise
        except grpc.RpcError as e:
            raise InferError(f"{e.code().name}: {_short_details(e)}") from None
        except Exception as e:  # socket and gRPC transport errors
            raise InferError(f"{type(e).__name__}: {_short(e)}") from None
        return self.batches.sizes[index]

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        if self._shm is not None:
            self._shm.close()
        with contextlib.suppress(Exception):  # a broken connection must not hide the real error
            self._client.close()


class _SharedMemory:
    """System shared memory for one worker's input and outputs on a local server.

    The input is rewritten on every request, as a real client would write new patches.
    """

    def __init__(self, client, max_batch: int):
        tag = uuid.uuid4().hex[:12]
        self.client = client
        self.names = {"input": f"sonic_in_{tag}", "output": f"sonic_out_{tag}"}
        self.input_bytes = max_batch * 48 * 48 * FLOAT_BYTES
        self.output_bytes = max_batch * 4 * FLOAT_BYTES
        self.handles = {
            "input": shm.create_shared_memory_region(
                self.names["input"], "/" + self.names["input"], self.input_bytes
            ),
            "output": shm.create_shared_memory_region(
                self.names["output"], "/" + self.names["output"], self.output_bytes
            ),
        }
        client.register_system_shared_memory(
            self.names["input"], "/" + self.names["input"], self.input_bytes
        )
        client.register_system_shared_memory(
            self.names["output"], "/" + self.names["output"], self.output_bytes
        )

    def prepare(self, module, batch: np.ndarray):
        shm.set_shared_memory_region(self.handles["input"], [batch])
        tensor = module.InferInput(INPUT_NAME, list(batch.shape), "FP32")
        tensor.set_shared_memory(self.names["input"], batch.nbytes)
        outputs, offset = [], 0
        for name, width in OUTPUTS:
            size = len(batch) * width * FLOAT_BYTES
            output = module.InferRequestedOutput(name)
            output.set_shared_memory(self.names["output"], size, offset=offset)
            outputs.append(output)
            offset += size
        return [tensor], outputs

    def read_outputs(self, n: int) -> np.ndarray:
        return shm.get_contents_as_numpy(self.handles["output"], np.float32, [n, 3])

    def close(self) -> None:
        for role, handle in self.handles.items():
            with contextlib.suppress(Exception):  # the server may be gone; free the region anyway
                self.client.unregister_system_shared_memory(self.names[role])
            shm.destroy_shared_memory_region(handle)
