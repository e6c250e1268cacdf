"""Shared fixtures: a real embedded tritonserver on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from helpers import REPOSITORY, server_config

from sonic_bench.model.repository import export_onnx
from sonic_bench.process import SHM_FOLDER
from sonic_bench.triton.server import EmbeddedServer
from sonic_bench.workload.batching import SMALL_BATCH_SETTING
from sonic_bench.workload.pool import BatchPool, simulated_pool


def _python_helper(process: psutil.Process) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return True


def _leftovers() -> set[Path]:
    return set(Path("/tmp").glob("sonic-*")) | set(SHM_FOLDER.iterdir())


@pytest.fixture(scope="session", autouse=True)
def leaves_the_machine_as_found() -> Iterator[None]:
    """The whole suite leaves no process, shared-memory region or temp folder of its own:
    checked after every other session fixture (the servers) has been torn down."""
    before = _leftovers()
    yield
    # Python's own multiprocessing helper lives as long as pytest and ends with it.
    ours = [p for p in psutil.Process().children(recursive=True) if not _python_helper(p)]
    _, alive = psutil.wait_procs(ours, timeout=10)
    assert not alive, f"processes left running: {[p.cmdline()[:4] for p in alive]}"
    left = _leftovers() - before
    assert not left, f"left behind: {sorted(map(str, left))}"


@pytest.fixture(scope="session")
def repository() -> Path:
    export_onnx(REPOSITORY)  # no-op when the files are already there
    return REPOSITORY


@pytest.fixture(scope="session")
def server(repository: Path, tmp_path_factory) -> Iterator[EmbeddedServer]:
    log = tmp_path_factory.mktemp("triton") / "server.log"
    with EmbeddedServer(server_config(log_path=log)).start() as running:
        yield running


@pytest.fixture(scope="session")
def small_pool() -> BatchPool:
    """Batches of one reduced event: real patches, quick to build."""
    return simulated_pool(SMALL_BATCH_SETTING, n_events=1, event_scale=0.2)


@pytest.fixture(scope="session")
def patches(small_pool: BatchPool) -> np.ndarray:
    return small_pool.batches[0].patches
