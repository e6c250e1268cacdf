"""tritonclient for everything but inference: health, metadata, statistics, shared
memory, each call with the endpoint's headers and a deadline. Inference requests go
through the engine (`sonic_bench.engine`)."""

from __future__ import annotations

import contextlib
import inspect
import socket
import ssl

import grpc
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.engine.sockets import address_of, target_of
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
            self._client = _grpc_client(target, endpoint)
        else:
            self._client = httpclient.InferenceServerClient(
                target,
                connection_timeout=endpoint.connect_timeout_s,
                network_timeout=min(endpoint.timeout_s, ADMIN_TIMEOUT_S),
                **_http_tls(endpoint),
            )

    def live_status(self) -> str:
        """What the server answered to the liveness probe, for a server that is not live:
        an HTTP status and the first line it said (a gateway's 401, say)."""
        get = getattr(self._client, "_get", None)
        if self.endpoint.protocol != "http" or get is None:
            return "not live"
        try:
            response = get("v2/health/live", self.endpoint.headers or None, None)
            text = response.read().decode(errors="replace").strip().splitlines()
        except Exception as e:  # the probe that said "not live" got through a moment ago
            return f"not live ({first_line(e)})"
        said = f": {text[0][:160]}" if text else ""
        return f"HTTP {response.status_code}{said}"

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must not hide why a check failed
            self._client.close()

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


# A gRPC channel of our own replaces tritonclient's options: its message limits again.
_GRPC_LIMITS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
]


def _grpc_client(target: str, endpoint: Endpoint) -> grpcclient.InferenceServerClient:
    """tritonclient's gRPC client with the endpoint's TLS: its CA, client certificate, or
    (--ssl-insecure) the certificate the server presents, trusted as it is."""
    if not endpoint.ssl:
        return grpcclient.InferenceServerClient(target)
    files = endpoint.tls.read()
    root, options = files["ca"], None
    if endpoint.tls.insecure:
        root, name = presented_certificate(address_of(endpoint.url, True), endpoint)
        options = [*_GRPC_LIMITS, ("grpc.ssl_target_name_override", name)]
    creds = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=files["key"], certificate_chain=files["cert"]
    )
    return grpcclient.InferenceServerClient(target, ssl=True, creds=creds, channel_args=options)


def presented_certificate(address: tuple[str, int], endpoint: Endpoint) -> tuple[bytes, str]:
    """The server's certificate (PEM) and a name it is issued to: what grpc, which cannot
    switch its checks off, is told to trust for --ssl-insecure."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if endpoint.tls.cert is not None:
        context.load_cert_chain(endpoint.tls.cert, endpoint.tls.key)
    try:
        with (
            socket.create_connection(address, timeout=endpoint.connect_timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=address[0]) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        pem = ssl.DER_cert_to_PEM_cert(der).encode()
        trusting = ssl.create_default_context(cadata=pem.decode())
        trusting.check_hostname = False
        trusting.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        if endpoint.tls.cert is not None:
            trusting.load_cert_chain(endpoint.tls.cert, endpoint.tls.key)
        with (
            socket.create_connection(address, timeout=endpoint.connect_timeout_s) as raw,
            trusting.wrap_socket(raw, server_hostname=address[0]) as tls,
        ):
            names = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "DNS"]
    except (OSError, ssl.SSLError) as e:
        raise SonicBenchError(
            f"cannot reach Triton at {endpoint.url} over TLS ({first_line(e)}): check --url"
        ) from None
    return pem, names[0] if names else address[0]


def _http_tls(endpoint: Endpoint) -> dict:
    """tritonclient.http's (geventhttpclient's) spelling of the endpoint's TLS."""
    if not endpoint.ssl:
        return {}
    tls = endpoint.tls
    options = {"ca_certs": tls.ca} if tls.ca else {}
    if tls.cert is not None:
        options |= {"certfile": tls.cert, "keyfile": tls.key}
    given: dict = {"ssl": True, "ssl_options": options, "insecure": tls.insecure}
    if tls.insecure:
        given["ssl_context_factory"] = _unverified_context
    return given


def _unverified_context(**_: object) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def admin_client(endpoint: Endpoint) -> AdminClient:
    return AdminClient(endpoint)


def check_server(endpoint: Endpoint, model: str) -> dict:
    """Fail with one clear line unless the server is live and `model` is ready."""
    client = admin_client(endpoint)
    try:
        return _checked(client, endpoint, model)
    finally:
        # Closed here, not by the garbage collector: a gRPC channel left to __del__ (held by
        # an error's traceback) hung a gevent process (a Locust worker) on its way out.
        client.close()


def _checked(client: AdminClient, endpoint: Endpoint, model: str) -> dict:
    try:
        live = client.is_server_live()
    except Exception as e:  # transport errors come in many types
        raise SonicBenchError(
            f"cannot reach Triton at {endpoint.url} over {endpoint.protocol} ({first_line(e)}): "
            + _what_to_check(e, endpoint)
        ) from None
    if not live:
        said = client.live_status()
        raise SonicBenchError(
            f"Triton at {endpoint.url} is not live ({said}): check --url"
            + (", and --header for a token" if said.startswith("HTTP 40") else "")
        )
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


def _what_to_check(error: Exception, endpoint: Endpoint) -> str:
    text = str(error).lower()
    if "certificate" in text or "ssl" in text or "handshake" in text:
        if endpoint.ssl:
            return "check --ssl-ca (or --ssl-cert/--ssl-key for mutual TLS, --ssl-insecure)"
        return "the server may speak TLS: add --ssl"
    if "unauthenticated" in text or "permission" in text:
        return "check --header (a token)"
    return "check --url and that the server runs"


def _latest(versions) -> str:
    numbers = [str(v) for v in versions or ()]
    return max(numbers, key=lambda v: (len(v), v)) if numbers else "1"
