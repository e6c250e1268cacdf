"""tritonclient for everything but inference: health, metadata, statistics, shared
memory, each call with the endpoint's headers and a deadline. Inference requests go
through the engine (`sonic_bench.engine`)."""

from __future__ import annotations

import inspect

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.engine.sockets import target_of
from sonic_bench.errors import SonicBenchError, first_line
from sonic_bench.model.signature import signature_of

# Health, metadata, statistics and shared-memory calls queue behind nothing: a server
# that takes longer for one is not answering.
ADMIN_TIMEOUT_S = 30.0


class ServerUnavailable(SonicBenchError):
    """The server stopped answering in the middle of a measurement."""


class AdminClient:
    """tritonclient for everything but inference (health, metadata, statistics, shared
    memory), every call with the endpoint's headers and a deadline: gRPC calls get
    `client_timeout`, HTTP ones the connection's timeouts. Without one a peer that
    accepts and never answers (or never opens its flow-control window) holds a call
    for ever. gRPC answers come as JSON dicts, as HTTP's do."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._defaults: dict[str, dict] = {}  # per method: the arguments it is given
        target = target_of(endpoint.url)
        if endpoint.protocol == "grpc":
            self._client = grpcclient.InferenceServerClient(target, ssl=endpoint.ssl)
        else:
            self._client = httpclient.InferenceServerClient(
                target,
                ssl=endpoint.ssl,
                connection_timeout=endpoint.connect_timeout_s,
                network_timeout=min(endpoint.timeout_s, ADMIN_TIMEOUT_S),
            )

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if not callable(method):
            return method
        if name not in self._defaults:
            accepted = inspect.signature(method).parameters
            given = {
                "headers": self.endpoint.headers or None,
                "client_timeout": min(self.endpoint.timeout_s, ADMIN_TIMEOUT_S),
                "as_json": True,
            }
            self._defaults[name] = {
                k: v for k, v in given.items() if k in accepted and v is not None
            }
        defaults = self._defaults[name]

        def call(*args, **kwargs):
            return method(*args, **(defaults | kwargs))

        return call


def admin_client(endpoint: Endpoint) -> AdminClient:
    return AdminClient(endpoint)


def check_server(endpoint: Endpoint, model: str) -> dict:
    """Fail with one clear line unless the server is live and `model` is ready."""
    client = admin_client(endpoint)
    try:
        live = client.is_server_live()
    except Exception as e:  # transport errors come in many types
        raise SonicBenchError(
            f"cannot reach Triton at {endpoint.url} over {endpoint.protocol} ({first_line(e)}): "
            "check --url and that the server runs"
        ) from None
    if not live:
        raise SonicBenchError(f"Triton at {endpoint.url} is not live")
    try:
        ready = client.is_model_ready(model)
    except InferenceServerException as e:
        raise SonicBenchError(f"model {model!r} on {endpoint.url}: {first_line(e)}") from None
    if not ready:
        raise SonicBenchError(
            f"model {model!r} is not ready on {endpoint.url}: check the name (--model) "
            "and the server's model repository"
        )
    server = client.get_server_metadata()
    config = client.get_model_config(model)
    if endpoint.protocol == "grpc":  # its JSON wraps the config in a message of its own
        config = config["config"]
    metadata = client.get_model_metadata(model)
    return {
        "triton_version": server.get("version"),
        "model_config": config,
        "model_version": _latest(metadata.get("versions")),
        # What requests carry and answers hold, as the server describes the model.
        "signature": signature_of(metadata, config),
    }


def _latest(versions) -> str:
    numbers = [str(v) for v in versions or ()]
    return max(numbers, key=lambda v: (len(v), v)) if numbers else "1"
