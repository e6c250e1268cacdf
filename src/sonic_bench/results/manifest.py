"""The one way a run's manifest is made: what was measured, plus when, by what, on what."""

from __future__ import annotations

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
