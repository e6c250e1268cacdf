"""The one way a run's manifest is made: what was measured, plus when, by what, on what."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sonic_bench.results.machine import this_harness, this_machine
from sonic_bench.results.schema import (
    LoadInfo,
    Manifest,
    RunKind,
    ServerInfo,
    WorkloadInfo,
    make_run_id,
    utc_now,
)

if TYPE_CHECKING:
    from sonic_bench.engine.endpoint import Endpoint
    from sonic_bench.workload.plan import RequestSet


def new_manifest(
    kind: RunKind, label: str, server: ServerInfo, workload: WorkloadInfo, load: LoadInfo
) -> Manifest:
    """A `running` manifest for a run starting now, on this machine, with this harness."""
    return Manifest(
        run_id=make_run_id(label),
        kind=kind,
        started_at=utc_now(),
        harness=this_harness(),
        server=server,
        workload=workload,
        load=load,
        machine=this_machine(),
    )


def workload_info(
    requests: RequestSet,
    uniform_batches: bool = False,
    event_scale: float = 1.0,
    avg_batch_size: float | None = None,
    patches_per_event: float | None = None,
) -> WorkloadInfo:
    """What a run sent (sweep and Locust alike): the batches replayed, where their inputs
    came from, and for ProtoDUNE-SP the events they are cut from."""
    pool = requests.pool
    if patches_per_event is None:
        patches_per_event = pool.patches_per_event if pool is not None else 0
    return WorkloadInfo(
        seed=requests.seed,
        batch_size_setting=requests.batch_setting,
        avg_batch_size=requests.average if avg_batch_size is None else avg_batch_size,
        patches_per_event=round(patches_per_event),
        event_scale=event_scale,
        uniform_batches=uniform_batches,
        replayed_batches=len(requests.batches),
        inputs=requests.record(),
    )


def target_parameters(endpoint: Endpoint) -> dict:
    """How the target was spoken to, in every run's load parameters (sweep and Locust)."""
    return {
        "protocol": endpoint.protocol,
        "ssl": endpoint.ssl,
        "tls": endpoint.tls.describe() if endpoint.ssl else None,
        "headers": sorted(endpoint.headers),  # their names: values may be tokens
        "timeout_s": endpoint.timeout_s,
        "connect_timeout_s": endpoint.connect_timeout_s,
    }
