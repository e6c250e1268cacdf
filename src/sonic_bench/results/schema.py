"""Schema v1 of a run folder (DESIGN.md): immutable records with what reproduces them."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

SCHEMA_VERSION = 1
RunKind = Literal["sweep", "loadgen", "baseline"]
RunStatus = Literal["running", "complete", "partial", "failed"]

STEP_COLUMNS = (
    "step",
    "concurrency",
    "rate",
    "batch_size",
    "started_at",
    "ended_at",
    "requests",
    "errors",
    "inferences_per_s",
    "requests_per_s",
    "latency_ms_avg",
    "latency_ms_std",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p95",
    "latency_ms_p99",
    "stable",
    "server_queue_us",
    "server_compute_input_us",
    "server_compute_infer_us",
    "server_compute_output_us",
    "server_batch_avg",
    "gpu_utilization",
    "cpu_utilization",
    "client_cpu_percent",
    "trial",  # repeated measurement of the same level (sweep --repeat)
    "reference_inferences_per_s",  # in-process throughput measured just before the level
)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_run_id(label: str, when: dt.datetime | None = None) -> str:
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{label}"


@dataclass(frozen=True)
class Harness:
    version: str
    git_sha: str | None


@dataclass(frozen=True)
class Machine:
    hostname: str
    cpu_model: str
    cores: int
    memory_bytes: int
    gpus: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerInfo:
    url: str | None  # None for in-process runs (baseline)
    protocol: str | None
    triton_version: str | None
    model: str
    model_version: str
    model_config: dict[str, Any] = field(default_factory=dict)
    dynamic_batching: bool = False
    max_batch_size: int = 0


def served_model(url: str, protocol: str, model: str, server_info: dict[str, Any]) -> ServerInfo:
    """ServerInfo from what check_server() read off a running Triton."""
    config = server_info["model_config"]
    return ServerInfo(
        url=url,
        protocol=protocol,
        triton_version=server_info["triton_version"],
        model=model,
        model_version="1",
        model_config=config,
        dynamic_batching="dynamic_batching" in config,
        max_batch_size=int(config.get("max_batch_size", 0)),
    )


@dataclass(frozen=True)
class WorkloadInfo:
    seed: int
    batch_size_setting: int | list[int]  # a list for baselines that measure several
    avg_batch_size: float
    patches_per_event: int
    event_scale: float = 1.0


@dataclass(frozen=True)
class LoadInfo:
    mode: Literal["closed", "open", "in-process"]
    levels: tuple[float, ...]
    step_seconds: float
    shared_memory: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)  # what else shapes the load


@dataclass(frozen=True)
class MetricsInfo:
    source: str | None = None
    prometheus_url: str | None = None
    status: str = "off"


@dataclass(frozen=True)
class Manifest:
    run_id: str
    kind: RunKind
    started_at: str
    harness: Harness
    server: ServerInfo
    workload: WorkloadInfo
    load: LoadInfo
    machine: Machine
    metrics: MetricsInfo = MetricsInfo()
    status: RunStatus = "running"
    ended_at: str | None = None
    warnings: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def finished(self, status: RunStatus, warnings: tuple[str, ...] = ()) -> Manifest:
        return replace(
            self, status=status, ended_at=utc_now(), warnings=self.warnings + tuple(warnings)
        )

    def with_warning(self, message: str) -> Manifest:
        return replace(self, warnings=(*self.warnings, message))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
