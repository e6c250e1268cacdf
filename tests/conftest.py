"""Shared fixtures: a real embedded tritonserver on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sonic_bench.model.repository import export_onnx
from sonic_bench.triton.server import EmbeddedServer, ServerConfig, free_port
from sonic_bench.workload.batching import SMALL_BATCH_SETTING
from sonic_bench.workload.pool import BatchPool, simulated_pool

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = ROOT / "model_repository"


def server_config(**overrides) -> ServerConfig:
    values = dict(
        repository=REPOSITORY / "embedded",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    values.update(overrides)
    return ServerConfig(**values)


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
