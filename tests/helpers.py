"""Helpers the tests share (imported as a plain module; fixtures live in conftest)."""

from __future__ import annotations

import csv
import gzip
import subprocess
import sys
import time
from pathlib import Path

from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.process import free_port
from sonic_bench.triton.server import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = ROOT / "model_repository"


def server_config(**overrides) -> ServerConfig:
    """The embedded server on free loopback ports."""
    values = dict(
        repository=REPOSITORY / "embedded",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    values.update(overrides)
    return ServerConfig(**values)


def quick_sweep(server, results: Path, *extra: str) -> list[str]:
    """`sonic-bench sweep` arguments for short levels of the calibration model at the small
    batch over gRPC, metrics off; `extra` says the rest."""
    return [
        "sweep", "--url", server.grpc_url, "--model", MODEL_CALIBRATION, "--batch", "small",
        "--window", "0.3", "--warmup", "0.1", "--max-windows", "3", "--metrics", "off",
        "--results", str(results), *extra,
    ]  # fmt: skip


LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadgen" / "sonic.py"), "--headless"]


def locust_command(server, results: Path, *extra: str) -> list[str]:
    options = {
        "--url": server.http_url,
        "--protocol": "http",
        "--batch": "small",
        "--results": str(results),
        "--event-scale": "0.01",
        "--other-seconds": "30",
        "--preprocess-seconds": "10",
        "--step-seconds-per-user": "0",
        "--loglevel": "WARNING",
        "--metrics-url": server.metrics_url,
        "--prometheus-port": str(free_port()),
    }
    return [*LOCUST, *(x for pair in options.items() for x in pair), "--only-summary", *extra]


def run_locust(command: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def read_requests(folder: Path) -> list[dict]:
    with gzip.open(folder / "requests.csv.gz", "rt") as f:
        return list(csv.DictReader(f))


def read_events(folder: Path) -> list[dict]:
    with open(folder / "events.csv") as f:
        return list(csv.DictReader(f))


def only_run(results: Path) -> Path:
    (folder,) = results.iterdir()
    return folder


def wait_for_first_event(locust, results: Path, timeout_s: float = 90) -> None:
    """Until a Locust run under `results` has recorded an event (a wait for a file the
    run writes, not a fixed sleep); fails if Locust ends first or it takes too long."""
    deadline = time.monotonic() + timeout_s
    while not list(results.glob("*/events.csv")):
        assert locust.poll() is None and time.monotonic() < deadline, "no event recorded"
        time.sleep(0.1)
