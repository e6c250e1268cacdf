"""A real gateway in front of Triton replicas: Debian's nginx, started and stopped by the
harness like its other servers (`process.ManagedProcess`: own session, reaper, temp
folder removed on every path).

What SuperSONIC puts in front of its Triton pods (Envoy: TLS, a bearer token on every
call, least-request balancing, a rate limiter that rejects), made of nginx: gRPC to the
replicas over HTTP/2 (`grpc_pass`), HTTP over kept-alive HTTP/1.1, `least_conn`, the
token checked before anything is forwarded (401 otherwise), an optional request-rate
limit that answers 429. The TLS certificate is made for the run (openssl, self-signed for
127.0.0.1 and localhost) unless one is given: a client trusts it with `--ssl-ca`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import string
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.process import Leftovers, ManagedProcess, last_line

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "gateway" / "nginx.conf"


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway's listeners and rules; `replicas` are (gRPC, HTTP) host:port pairs."""

    replicas: tuple[tuple[str, str], ...]
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    token: str | None = None  # None: no token asked for
    tls: bool = True
    cert: Path | None = None  # with key: the user's; None: one made for the run
    key: Path | None = None
    rate_limit: float | None = None  # requests per second through the gateway; None: none
    workers: int = 1
    binary: str = "nginx"
    startup_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.replicas:
            raise SonicBenchError("a gateway needs at least one replica behind it")
        if (self.cert is None) != (self.key is None):
            raise SonicBenchError("give both --gateway-cert and --gateway-key, or neither")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise SonicBenchError(
                f"--gateway-rate-limit {self.rate_limit:g}: give requests per second above 0"
            )


def new_token() -> str:
    """A bearer token for a run's gateway (what a JWT stands for here: a secret per call)."""
    return secrets.token_urlsafe(24)


class Gateway:
    """One nginx process; use as a context manager so it is always stopped."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.folder = Path(tempfile.mkdtemp(prefix="sonic-gateway-"))
        self.managed: ManagedProcess | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.config.host}:{self.config.http_port}"

    @property
    def certificate(self) -> Path | None:
        """The certificate a client trusts (`--ssl-ca`); None without TLS."""
        if not self.config.tls:
            return None
        return self.config.cert or self.folder / "gateway.pem"

    @property
    def headers(self) -> dict[str, str]:
        """What every call through the gateway must carry."""
        token = self.config.token
        return {"authorization": f"Bearer {token}"} if token else {}

    def start(self) -> Gateway:
        try:
            binary = shutil.which(self.config.binary)
            if binary is None:
                raise SonicBenchError(
                    f"{self.config.binary} not found: the gateway is Debian's nginx "
                    "(make setup installs it as root; apt-get install nginx)"
                )
            ManagedProcess.check_ports(
                self.config.host,
                {"gateway gRPC": self.config.grpc_port, "gateway HTTP": self.config.http_port},
                lambda role: "stop what holds it or choose other --grpc-port/--http-port",
            )
            conf = self._write_config()
        except BaseException:
            Leftovers(folders=(self.folder,)).remove()
            raise
        self.managed = ManagedProcess(
            name="nginx",
            command=[binary, "-p", str(self.folder), "-c", str(conf)],
            log_path=self.folder / "nginx.log",
            ready=self._listening,
            startup_timeout_s=self.config.startup_timeout_s,
            leftovers=Leftovers(folders=(self.folder,)),
            death_reason=self._death_reason,
        )
        self.managed.start()
        return self

    def _death_reason(self, log: str, code: int | None) -> str:
        errors = (self.folder / "error.log").read_text(errors="replace") if self._has_log() else ""
        return f"nginx exited during start (code {code}): {last_line(errors or log)}"

    def _has_log(self) -> bool:
        return (self.folder / "error.log").exists()

    def _listening(self) -> bool:
        for port in (self.config.grpc_port, self.config.http_port):
            try:
                socket.create_connection((self.config.host, port), timeout=0.5).close()
            except OSError:
                return False
        return True

    def _write_config(self) -> Path:
        c = self.config
        for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.folder / folder).mkdir()
        tls_lines = ""
        if c.tls:
            cert, key = self._certificate()
            tls_lines = (
                f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
                "        ssl_protocols TLSv1.2 TLSv1.3;"
            )
        rate_zone = rate_limit = ""
        if c.rate_limit is not None:
            # One zone for the whole gateway (every client together), as a deployment's
            # limiter guards its replicas; excess calls answered 429 at once.
            rate_zone = (
                "    map $host $gateway_wide {\n        default all;\n    }\n"
                f"    limit_req_zone $gateway_wide zone=replicas:1m rate={c.rate_limit:g}r/s;"
            )
            burst = max(1, round(c.rate_limit))
            rate_limit = (
                f"            limit_req zone=replicas burst={burst} nodelay;\n"
                "            limit_req_status 429;"
            )
        values = {
            "workers": str(c.workers),
            # As root, nginx hands its workers to an unprivileged user, who could not read
            # this run's folder: they stay root, on loopback, for the length of a run.
            "user": "user root;" if os.geteuid() == 0 else "",
            "folder": str(self.folder),
            "host": c.host,
            "grpc_port": str(c.grpc_port),
            "http_port": str(c.http_port),
            "ssl": "ssl" if c.tls else "",
            "tls": tls_lines,
            "token": c.token or "",
            "token_default": "0" if c.token else "1",
            "rate_zone": rate_zone,
            "rate_limit": rate_limit,
            "grpc_servers": "\n".join(f"        server {g};" for g, _ in c.replicas),
            "http_servers": "\n".join(f"        server {h};" for _, h in c.replicas),
        }
        if not TEMPLATE.exists():
            raise SonicBenchError(f"gateway config template {TEMPLATE} is missing")
        conf = self.folder / "nginx.conf"
        conf.write_text(string.Template(TEMPLATE.read_text()).substitute(values))
        return conf

    def _certificate(self) -> tuple[Path, Path]:
        """The user's certificate, or a self-signed one made now for this run's hosts."""
        if self.config.cert is not None:
            return self.config.cert, self.config.key
        cert, key = self.folder / "gateway.pem", self.folder / "gateway.key"
        names = sorted({"DNS:localhost", "IP:127.0.0.1", _san(self.config.host)})
        command = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
            "-subj", "/CN=sonic-bench gateway", "-addext", f"subjectAltName={','.join(names)}",
            "-keyout", str(key), "-out", str(cert),
        ]  # fmt: skip
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        except FileNotFoundError:
            raise SonicBenchError(
                "openssl not found: it makes the gateway's certificate (apt-get install "
                "openssl), or give --gateway-cert and --gateway-key"
            ) from None
        except subprocess.CalledProcessError as e:
            raise SonicBenchError(
                f"openssl could not make the gateway's certificate: {last_line(e.stderr.decode())}"
            ) from None
        return cert, key

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()
            self.managed = None
        else:
            Leftovers(folders=(self.folder,)).remove()

    def __enter__(self) -> Gateway:
        if self.managed is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _san(host: str) -> str:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return f"DNS:{host}"
    return f"IP:{host}"
