"""The embedded Triton server: the real tritonserver binary as a child process.

Started on 127.0.0.1 with the model repository, ready when every model is, and always
stopped by us (on exit, error or Ctrl-C) together with its Python-backend stub processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.triton.install import backend_directory, find_install

# Big enough for a 1693-patch request (15.6 MB) without the stub growing its region per call.
PYTHON_SHM_BYTES = 64 * 1024 * 1024
_LOAD_FAILURE = re.compile(r"failed to load '([^']+)'.*?: (.*)$")


@dataclass(frozen=True)
class ServerConfig:
    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    models: tuple[str, ...] = ()  # empty: every model in the repository
    startup_timeout_s: float = 180.0
    metrics_interval_ms: int = 1000
    log_path: Path | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def ports(self) -> dict[str, int]:
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port_free(host: str, port: int, role: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do: connections of a just-stopped server (TIME_WAIT) do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise SonicBenchError(
                f"port {port} on {host} ({role}) is already in use: stop what holds it "
                f"or choose another with --{role}-port"
            ) from None


class EmbeddedServer:
    """A tritonserver process; use as a context manager so it is always stopped."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = config.log_path or Path(tempfile.mkdtemp(prefix="sonic-triton-")) / "log"

    @property
    def http_url(self) -> str:
        return f"{self.config.host}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.host}:{self.config.metrics_port}/metrics"

    def command(self) -> list[str]:
        c = self.config
        install = find_install()
        args = [
            str(install.binary),
            f"--model-repository={c.repository.resolve()}",
            f"--backend-directory={backend_directory(install)}",
            f"--http-address={c.host}",
            f"--http-port={c.http_port}",
            f"--grpc-address={c.host}",
            f"--grpc-port={c.grpc_port}",
            f"--metrics-address={c.host}",
            f"--metrics-port={c.metrics_port}",
            f"--metrics-interval-ms={c.metrics_interval_ms}",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=10",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_BYTES}",
        ]
        if c.models:
            args.append("--model-control-mode=explicit")
            args += [f"--load-model={m}" for m in c.models]
        return args + list(c.extra_args)

    def start(self, on_wait: Callable[[float], None] | None = None) -> EmbeddedServer:
        c = self.config
        if not c.repository.is_dir():
            raise SonicBenchError(
                f"model repository {c.repository} not found: run 'sonic-bench model export'"
            )
        for role, port in c.ports().items():
            _check_port_free(c.host, port, role)
        command = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # A session of its own: Ctrl-C reaches us, and we stop the server and its stubs.
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=find_install().environment(),
                start_new_session=True,
            )
        try:
            self._wait_ready(on_wait)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, on_wait: Callable[[float], None] | None) -> None:
        assert self.process is not None
        began = time.monotonic()
        ready_url = f"http://{self.http_url}/v2/health/ready"
        while True:
            waited = time.monotonic() - began
            if self.process.poll() is not None:
                raise SonicBenchError(self._death_reason())
            if _http_ok(ready_url):
                return
            if waited > self.config.startup_timeout_s:
                raise SonicBenchError(
                    f"tritonserver not ready after {self.config.startup_timeout_s:.0f} s "
                    f"(log: {self.log_path}); raise --startup-timeout"
                )
            if on_wait:
                on_wait(waited)
            time.sleep(0.2)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _death_reason(self) -> str:
        log = self.log_text()
        failures = [m for m in map(_LOAD_FAILURE.search, log.splitlines()) if m]
        if failures:
            name, reason = failures[0].groups()
            return f"model '{name}' failed to load: {reason.strip()} (log: {self.log_path})"
        last = [line for line in log.splitlines() if line.strip()][-1:] or ["(empty log)"]
        code = self.process.returncode if self.process else None
        return f"tritonserver exited during start (code {code}): {last[0]} (log: {self.log_path})"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server and every process of its session (the backend stubs)."""
        if self.process is None:
            return
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            self.process.wait()
        # Stubs that outlived the server (they should not) are ended too.
        _signal_group(group, signal.SIGKILL)
        self.process = None

    def __enter__(self) -> EmbeddedServer:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
