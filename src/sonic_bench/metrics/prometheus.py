"""A real Prometheus server for one run: generated config, own data folder, loopback.

The Debian package's binary runs as a plain process; `PrometheusUnavailable` says why
it could not be used, and the caller falls back to scraping Triton directly.
"""

from __future__ import annotations

import json
import shutil
import string
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.process import Leftovers, ManagedProcess, http_ok, port_free

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
    """A Prometheus process of our own, with its data in a folder that goes with it."""

    def __init__(self, config: PrometheusConfig, folder: Path | None = None):
        self.config = config
        self.owns_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="sonic-prometheus-"))
        self.managed: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self) -> PrometheusServer:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PrometheusServer:
        binary = shutil.which(self.config.binary)
        if binary is None:
            raise PrometheusUnavailable(
                f"Prometheus binary {self.config.binary!r} not found (apt-get install prometheus)"
            )
        if not port_free(self.config.host, self.config.port):
            raise PrometheusUnavailable(
                f"port {self.config.port} on {self.config.host} is taken: "
                "pass --prometheus-port or --prometheus-url"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        config_file = self.folder / "prometheus.yml"
        config_file.write_text(self.config.render())  # fails before anything is started
        self.managed = ManagedProcess(
            name="Prometheus",
            command=[
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address={self.config.host}:{self.config.port}",
                "--storage.tsdb.retention.time=7d",
            ],
            log_path=self.folder / "prometheus.log",
            ready=lambda: http_ok(f"{self.url}/-/ready"),
            startup_timeout_s=self.config.startup_timeout_s,
            leftovers=Leftovers(folders=(self.folder,) if self.owns_folder else ()),
            death_reason=_death_reason,
            # Its shutdown (~1 s) writes out a database that goes with an owned folder.
            shutdown_moot=_nothing_kept if self.owns_folder else None,
        )
        try:
            self.managed.start()
        except SonicBenchError as e:
            raise PrometheusUnavailable(str(e)) from None
        return self

    def wait_until_scraping(self, timeout_s: float) -> bool:
        """Whether every Triton target was scraped once within `timeout_s`. /-/ready comes
        first: Prometheus hands its targets to the scraper ~5.5 s after it starts (its
        discovery's 5 s throttle), and a level measured before then has no server values."""
        deadline = time.monotonic() + timeout_s
        while not self.scraped_every_target():
            if not self.alive or time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def scraped_every_target(self) -> bool:
        try:
            url = f"{self.url}/api/v1/targets?state=active"
            with urllib.request.urlopen(url, timeout=1.0) as response:
                targets = json.load(response)["data"]["activeTargets"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        scraped = [t for t in targets if not str(t.get("lastScrape", "0001")).startswith("0001")]
        return len(scraped) >= len(self.config.triton_targets)

    @property
    def alive(self) -> bool:
        return self.managed is not None and self.managed.alive

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()  # removes an owned folder with the rest
            self.managed = None
        elif self.owns_folder:  # start failed before the process existed
            Leftovers(folders=(self.folder,)).remove()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _nothing_kept() -> bool:
    return True


def _death_reason(log: str, code: int | None) -> str:
    tail = log.strip()
    last = tail.splitlines()[-1] if tail else "(no output)"
    reason = last.split("err=", 1)[-1] if "err=" in last else last
    return f"Prometheus exited during start: {reason[:300]}"
