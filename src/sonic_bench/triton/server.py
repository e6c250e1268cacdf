"""The embedded Triton server: the real tritonserver binary as a child process.

Started on 127.0.0.1 with the model repository, ready when every model is, and always
stopped by us (on exit, error, Ctrl-C, or our own SIGKILL through the reaper) together
with its Python-backend stub processes, its temp folder and its shared-memory regions.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.process import Leftovers, ManagedProcess, http_ok, last_line
from sonic_bench.triton.install import backend_directory, find_install

# Big enough for a 1693-patch request (15.6 MB) without the stub growing its region per call.
PYTHON_SHM_BYTES = 64 * 1024 * 1024
_LOAD_FAILURE = re.compile(r"failed to load '([^']+)'.*?: (.*)$")
_LOADED_OR_UNLOADED = re.compile(r"successfully (loaded|unloaded) '([^']+)'")


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
    gpu_metrics: bool = False  # Triton's GPU series (utilization, memory, power, energy)
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def ports(self) -> dict[str, int]:
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}


class EmbeddedServer:
    """A tritonserver process; use as a context manager so it is always stopped."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.managed: ManagedProcess | None = None
        # The Python backend names its regions with this prefix: ours alone, so that
        # they can be removed when the server is gone without touching another server's.
        self.shm_prefix = f"sonic-triton-{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        if config.log_path is None:
            self.temp_folder: Path | None = Path(tempfile.mkdtemp(prefix="sonic-triton-"))
            self.log_path = self.temp_folder / "log"
        else:
            self.temp_folder, self.log_path = None, config.log_path

    @property
    def http_url(self) -> str:
        return f"{self.config.host}:{self.config.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config.host}:{self.config.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        process = self.managed.process if self.managed else None
        return process.pid if process else None

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
            f"--allow-gpu-metrics={'true' if c.gpu_metrics else 'false'}",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--exit-timeout-secs=10",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_BYTES}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
        ]
        if c.models:
            args.append("--model-control-mode=explicit")
            args += [f"--load-model={m}" for m in c.models]
        return args + list(c.extra_args)

    def start(self, on_wait: Callable[[float], None] | None = None) -> EmbeddedServer:
        c = self.config
        if not c.repository.is_dir():
            self._remove_temp()
            raise SonicBenchError(
                f"model repository {c.repository} not found: run 'sonic-bench model export'"
            )
        try:
            ManagedProcess.check_ports(
                c.host,
                c.ports(),
                lambda role: f"stop what holds it or choose another with --{role}-port",
            )
            command = self.command()
        except SonicBenchError:
            self._remove_temp()
            raise
        ready_url = f"http://{self.http_url}/v2/health/ready"
        self.managed = ManagedProcess(
            name="tritonserver",
            command=command,
            log_path=self.log_path,
            ready=lambda: http_ok(ready_url),
            startup_timeout_s=c.startup_timeout_s,
            env=find_install().environment(),
            leftovers=Leftovers(
                folders=(self.temp_folder,) if self.temp_folder else (),
                shm_prefixes=(self.shm_prefix,),
            ),
            death_reason=self._death_reason,
            shutdown_moot=self._unloaded_everything,
        )
        try:
            self.managed.start(on_wait)
        except SonicBenchError as e:
            if "not ready after" not in str(e):
                raise
            raise SonicBenchError(
                f"tritonserver not ready after {c.startup_timeout_s:.0f} s "
                f"(last log line: {last_line(self.managed.log_text())}); "
                "raise --startup-timeout"
            ) from None
        return self

    def _log_hint(self) -> str:
        """Where the log is, when it outlives the server (a temp folder does not)."""
        return f" (log: {self.log_path})" if self.temp_folder is None else ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _death_reason(self, log: str, code: int | None) -> str:
        failures = [m for m in map(_LOAD_FAILURE.search, log.splitlines()) if m]
        if failures:
            name, reason = failures[0].groups()
            return f"model '{name}' failed to load: {reason.strip()}{self._log_hint()}"
        last = last_line(log)
        return f"tritonserver exited during start (code {code}): {last}{self._log_hint()}"

    def _unloaded_everything(self) -> bool:
        """Whether every model the server loaded is unloaded again: after SIGTERM, once the
        last is, nothing more can be answered (its unload waits for what it executes).
        What is left of Triton's shutdown is checking so in 1-s steps: about a second."""
        assert self.managed is not None
        last = dict(
            (name, event) for event, name in _LOADED_OR_UNLOADED.findall(self.managed.log_text())
        )
        return all(event == "unloaded" for event in last.values())

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        assert self.managed is not None and self.managed.process is not None
        return self.managed.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server and every process of its session (the backend stubs)."""
        if self.managed is not None:
            self.managed.stop(timeout_s)  # removes the temp folder with the rest
            self.managed = None
        else:
            self._remove_temp()

    def _remove_temp(self) -> None:
        Leftovers(folders=(self.temp_folder,) if self.temp_folder else ()).remove()

    def __enter__(self) -> EmbeddedServer:
        if self.managed is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
