"""Triton's HTTP/REST infer with each request body built once, on a connection per worker.

tritonclient.http's `infer()` dumps the JSON header and joins it with the 15 MB binary
input on every call, then sends through geventhttpclient; the copy and the per-call
Python work are the client's cost, not the server's. As on gRPC (`grpc_raw`), the body of
every batch (JSON header + binary tensor, Triton's binary tensor extension) is built
once, and each worker posts those bytes on its own keep-alive connection (http.client:
one `sendall` of the body, no copy).
"""

from __future__ import annotations

import http.client
import json
import ssl as ssl_module
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sonic_bench.model.emtrackmichel import INPUT_NAME

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class RequestBody:
    body: bytes
    json_size: int


def request_bodies(batches: Sequence[np.ndarray], outputs: Sequence[str]) -> list[RequestBody]:
    """One infer request body per batch: the JSON header, then the FP32 input as binary."""
    bodies = []
    for batch in batches:
        data = np.ascontiguousarray(batch, np.float32).tobytes()
        header = {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": list(batch.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
        text = json.dumps(header).encode()
        bodies.append(RequestBody(text + data, len(text)))
    return bodies


class HttpInferError(Exception):
    """Triton answered with an error, or the answer lacks what was asked for."""


class RawHttpConnection:
    """One worker's connection to POST /v2/models/MODEL/infer."""

    def __init__(self, url: str, model: str, ssl: bool, headers: dict[str, str], timeout_s: float):
        host = url.split("://", 1)[-1].rstrip("/")
        self._connect = (
            (lambda: http.client.HTTPSConnection(
                host, timeout=timeout_s, context=ssl_module.create_default_context()
            ))
            if ssl
            else (lambda: http.client.HTTPConnection(host, timeout=timeout_s))
        )  # fmt: skip
        self._connection = self._connect()
        self._path = f"/v2/models/{model}/infer"
        self._headers = {"Content-Type": "application/octet-stream", **headers}

    def infer(self, request: RequestBody, expected_outputs: int) -> None:
        headers = {**self._headers, HEADER_LENGTH: str(request.json_size)}
        try:
            self._connection.request("POST", self._path, body=request.body, headers=headers)
            response = self._connection.getresponse()
            payload = response.read()
        except Exception:
            # A connection that failed mid-request cannot be reused: the next call opens
            # a fresh one (as a client retrying after a server restart would).
            self._connection.close()
            self._connection = self._connect()
            raise
        header_size = response.getheader(HEADER_LENGTH)
        header = json.loads(payload[: int(header_size)] if header_size else payload or b"{}")
        if response.status != 200:
            raise HttpInferError(header.get("error") or f"HTTP {response.status}")
        if len(header.get("outputs", ())) != expected_outputs:
            raise HttpInferError("response has no output tensor")

    def close(self) -> None:
        self._connection.close()
