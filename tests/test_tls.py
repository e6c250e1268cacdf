"""TLS against a real endpoint: the embedded tritonserver's own gRPC TLS
(`--grpc-use-ssl`, and `--grpc-use-ssl-mutual` for mutual TLS), with a CA and
certificates made for the test by trustme. Sweep, Locust and perf_analyzer, each with
`--ssl-ca`, a client certificate, `--ssl-insecure`, and a wrong CA refused in one line.
HTTPS is met through the gateway (Triton's HTTP endpoint has no TLS of its own) and,
for the engine's side of it, a scripted TLS peer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from helpers import locust_command, quick_sweep, run_locust, server_config
from peers import H11, Link, Peer, client

from sonic_bench.cli import main
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.triton.server import EmbeddedServer

pytestmark = pytest.mark.server


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    user = ca.issue_cert("grid-job@example.org")
    paths = {
        "ca": folder / "ca.pem",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client.key",
        "other_ca": folder / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(paths["ca"])
    server.private_key_pem.write_to_path(paths["server_key"])
    paths["server_cert"].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    user.private_key_pem.write_to_path(paths["client_key"])
    paths["client_cert"].write_bytes(b"".join(blob.bytes() for blob in user.cert_chain_pems))
    other.cert_pem.write_to_path(paths["other_ca"])
    return Certificates(**paths)


def _tls_server(certificates: Certificates, tmp_path_factory, mutual: bool):
    log = tmp_path_factory.mktemp("triton-tls") / "server.log"
    args = (
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={certificates.server_cert}",
        f"--grpc-server-key={certificates.server_key}",
        f"--grpc-root-cert={certificates.ca}",
        f"--grpc-use-ssl-mutual={'true' if mutual else 'false'}",
    )
    config = server_config(log_path=log, models=(MODEL_CALIBRATION,), extra_args=args)
    return EmbeddedServer(config).start()


@pytest.fixture(scope="module")
def tls_server(repository, certificates, tmp_path_factory) -> Iterator[EmbeddedServer]:
    with _tls_server(certificates, tmp_path_factory, mutual=False) as running:
        yield running


@pytest.fixture(scope="module")
def mutual_server(repository, certificates, tmp_path_factory) -> Iterator[EmbeddedServer]:
    with _tls_server(certificates, tmp_path_factory, mutual=True) as running:
        yield running


def _sweep(server, results: Path, *tls: str) -> list[str]:
    return [*quick_sweep(server, results, "--concurrency", "1,2"), *tls]


def _manifest(results: Path) -> dict:
    (folder,) = [p for p in results.iterdir() if (p / "manifest.json").exists()]
    return json.loads((folder / "manifest.json").read_text())


def test_a_sweep_over_grpc_tls_with_the_servers_ca_is_complete(
    tls_server, certificates, tmp_path, capsys
):
    code = main(_sweep(tls_server, tmp_path, "--ssl-ca", str(certificates.ca)))
    manifest = _manifest(tmp_path)
    assert code == 0, capsys.readouterr().err
    assert manifest["status"] == "complete"  # counts equal the server's: nobody else, none lost
    assert manifest["load"]["parameters"]["tls"]["ca"] == str(certificates.ca)


def test_a_wrong_ca_is_refused_in_one_line(tls_server, certificates, tmp_path, capsys):
    code = main(_sweep(tls_server, tmp_path, "--ssl-ca", str(certificates.other_ca)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "--ssl-ca" in err[0], err
    assert "Traceback" not in "".join(err)


def test_without_tls_against_a_tls_server_the_error_says_add_ssl(tls_server, tmp_path, capsys):
    code = main(_sweep(tls_server, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err


def test_ssl_insecure_reaches_a_server_whose_ca_is_not_given(tls_server, tmp_path, capsys):
    code = main(_sweep(tls_server, tmp_path, "--ssl-insecure"))
    assert code == 0, capsys.readouterr().err
    assert _manifest(tmp_path)["load"]["parameters"]["tls"]["insecure"] is True


def test_mutual_tls_with_the_client_certificate_is_complete(
    mutual_server, certificates, tmp_path, capsys
):
    tls = ("--ssl-ca", str(certificates.ca), "--ssl-cert", str(certificates.client_cert))
    code = main(_sweep(mutual_server, tmp_path, *tls, "--ssl-key", str(certificates.client_key)))
    assert code == 0, capsys.readouterr().err
    assert _manifest(tmp_path)["status"] == "complete"


def test_mutual_tls_without_a_client_certificate_is_refused_in_one_line(
    mutual_server, certificates, tmp_path, capsys
):
    code = main(_sweep(mutual_server, tmp_path, "--ssl-ca", str(certificates.ca)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err


def test_a_client_certificate_without_its_key_is_one_clear_error(
    tls_server, certificates, tmp_path, capsys
):
    code = main(_sweep(tls_server, tmp_path, "--ssl-cert", str(certificates.client_cert)))
    err = capsys.readouterr().err
    assert code == 2 and "--ssl-key" in err and "Traceback" not in err


def test_perf_analyzer_over_grpc_tls_gets_the_ca_and_the_client_certificate(
    mutual_server, certificates, tmp_path, capsys
):
    tls = ("--ssl-ca", str(certificates.ca), "--ssl-cert", str(certificates.client_cert))
    argv = _sweep(mutual_server, tmp_path, *tls, "--ssl-key", str(certificates.client_key))
    argv[argv.index("--concurrency") + 1] = "1"
    code = main([*argv, "--engine", "perf_analyzer"])
    assert code == 0, capsys.readouterr().err
    assert _manifest(tmp_path)["status"] == "complete"


def test_perf_analyzer_refuses_ssl_insecure_over_grpc_in_one_line(tls_server, tmp_path, capsys):
    code = main([*_sweep(tls_server, tmp_path, "--ssl-insecure"), "--engine", "perf_analyzer"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ssl-insecure" in err[0], err


def test_a_locust_run_over_grpc_tls_is_complete(tls_server, certificates, tmp_path):
    command = locust_command(
        tls_server, tmp_path, "--model", MODEL_CALIBRATION, "--metrics", "off",
        "--staircase", "2", "--step-seconds", "3", "--other-seconds", "0.5",
        "--ssl-ca", str(certificates.ca),
    )  # fmt: skip
    command[command.index("--url") + 1] = tls_server.grpc_url
    command[command.index("--protocol") + 1] = "grpc"
    done = run_locust(command)
    manifest = _manifest(tmp_path)
    assert manifest["status"] == "complete", done.stderr[-3000:]
    assert manifest["load"]["parameters"]["tls"]["ca"] == str(certificates.ca)


def test_the_engine_speaks_https_with_a_ca_and_refuses_a_wrong_one(certificates):
    """HTTP/1.1 over TLS, the engine's side (ALPN http/1.1), against a TLS peer."""
    import ssl

    from sonic_bench.engine.client import InferError
    from sonic_bench.engine.endpoint import TlsOptions

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)

    def serve(link: Link) -> None:
        peer = H11(link)
        while peer.serve_one():
            pass

    with Peer(serve, tls=context) as peer:
        good = client(peer.url, "http", ssl=True, tls=TlsOptions(ca=str(certificates.ca)))
        bad = client(peer.url, "http", ssl=True, tls=TlsOptions(ca=str(certificates.other_ca)))
        try:
            assert good.infer(0) == 2
            with pytest.raises(InferError, match="CERTIFICATE_VERIFY_FAILED"):
                bad.infer(0)
        finally:
            good.close()
            bad.close()


def test_a_stalled_tls_handshake_holds_only_its_own_request(certificates):
    """One replica accepts and never finishes its handshake: that slot's request fails
    after --connect-timeout, while the event loop's other slot goes on answering."""
    import ssl
    import time

    from peers import MODEL, batches, h2_serving

    from sonic_bench.engine.client import InferClient
    from sonic_bench.engine.endpoint import Endpoint, TlsOptions
    from sonic_bench.engine.loop import ClosedLoop
    from sonic_bench.measure.records import Clock

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    context.set_alpn_protocols(["h2"])
    with Peer(h2_serving(), tls=context, handshake=lambda n: n != 0) as peer:
        endpoint = Endpoint(
            peer.url, "grpc", True, connect_timeout_s=1.0, tls=TlsOptions(ca=str(certificates.ca))
        )
        loop = ClosedLoop(lambda: InferClient(endpoint, MODEL, batches()), 2, Clock())
        loop.start()
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                records = loop.log.records()
                if any(not r.ok for r in records) and sum(r.ok for r in records) >= 20:
                    break
                time.sleep(0.02)  # polling a condition, not timing one
        finally:
            loop.stop()
    records = loop.log.records()
    (stalled, *_) = [r for r in records if not r.ok]
    assert "no TLS handshake" in stalled.error and "within 1 s" in stalled.error
    assert 1.0 <= stalled.t_recv - stalled.t_send < 3.0
    meanwhile = [r for r in records if r.ok and r.t_recv < stalled.t_recv]
    assert len(meanwhile) >= 10 and loop.failure is None
