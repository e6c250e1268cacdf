"""A real Prometheus server for one run: generated config, own data folder, loopback.

The Debian package's binary runs as a plain process; `PrometheusUnavailable` says why
it could not be used, and the caller falls back to scraping Triton directly.
"""

from __future__ import annotations

import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sonic_bench.errors import SonicBenchError

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "sonic-bench.yml"


class PrometheusUnavailable(SonicBenchError):
    """Prometheus could not be started or reached; the run goes on without it."""


@dataclass(frozen=True)
class PrometheusConfig:
    triton_targets: tuple[str, ...]  # host:port of Triton's metrics endpoint(s)
    host: str = "127.0.0.1"
    port: int = 9090
    interval_s: float = 1.0
    binary: str = "prometheus"
    startup_timeout_s: float = 30.0

    def render(self) -> str:
        if not TEMPLATE.exists():
            raise PrometheusUnavailable(f"Prometheus config template {TEMPLATE} is missing")
        return string.Template(TEMPLATE.read_text()).substitute(
            # Prometheus durations take whole numbers: milliseconds.
            interval=f"{round(self.interval_s * 1000)}ms",
            timeout=f"{round(max(self.interval_s * 0.8, 0.5) * 1000)}ms",
            triton_targets=", ".join(f"'{t}'" for t in self.triton_targets),
        )


class PrometheusServer:
    def __init__(self, config: PrometheusConfig, folder: Path | None = None):
        self.config = config
        self.folder = folder or Path(tempfile.mkdtemp(prefix="sonic-prometheus-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self) -> PrometheusServer:
        binary = shutil.which(self.config.binary)
        if binary is None:
            raise PrometheusUnavailable(
                f"Prometheus binary {self.config.binary!r} not found (apt-get install prometheus)"
            )
        if not _port_free(self.config.host, self.config.port):
            raise PrometheusUnavailable(
                f"port {self.config.port} on {self.config.host} is taken: "
                "pass --prometheus-port or --prometheus-url"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        config_file = self.folder / "prometheus.yml"
        config_file.write_text(self.config.render())  # fails before anything is started
        log = open(self.folder / "prometheus.log", "wb")  # noqa: SIM115 (lives with the process)
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address={self.config.host}:{self.config.port}",
                "--storage.tsdb.retention.time=7d",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = (self.folder / "prometheus.log").read_text(errors="replace").strip()
                last = tail.splitlines()[-1] if tail else "(no output)"
                reason = last.split("err=", 1)[-1] if "err=" in last else last
                self.stop()
                raise PrometheusUnavailable(f"Prometheus exited during start: {reason[:300]}")
            if _ready(f"{self.url}/-/ready"):
                return
            time.sleep(0.2)
        self.stop()
        raise PrometheusUnavailable(f"Prometheus not ready after {self.config.startup_timeout_s} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
