"""Schema v1 of a run folder (DESIGN.md): immutable records with what reproduces them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
import types
import typing
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from sonic_bench.errors import SonicBenchError

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)  # v2 added provenance (versions, CPU flags, GPU driver)
RunKind = Literal["sweep", "loadgen", "baseline", "accuracy"]
RunStatus = Literal["running", "complete", "partial", "failed"]

# One row per replica and level when the run went through a gateway to several.
REPLICA_COLUMNS = (
    "step",
    "replica",
    "inferences",
    "share",
    "inferences_per_s",
    "server_batch_avg",
    "server_queue_us",
    "reachable",
)

STEP_COLUMNS = (
    "step",
    "concurrency",
    "rate",
    "batch_size",
    "started_at",
    "ended_at",
    "requests",
    "errors",
    "rejected",  # of the errors: refused by a gateway or the server, never served
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
    "gpu_power_w",  # mean over the level, every GPU's
    "gpu_energy_j",  # joules the GPUs used over the level (Triton's nv_energy_consumption)
    "cpu_utilization",
    "client_cpu_percent",
    "trial",  # repeated measurement of the same level (sweep --repeat)
    "reference_inferences_per_s",  # in-process throughput measured just before the level
    "send_lag_ms",  # open loop: how late sends left against their schedule, on average
    "verdict",  # VALID or INVALID (measure/verdict.py)
    "verdict_reasons",  # why not VALID, "; "-separated
    "bounded_percentiles",  # percentiles reported as their early-stopping bound, e.g. "p99"
    "processes",  # baseline: processes side by side (concurrency: threads of each)
)


REQUEST_COLUMNS = ("step", "worker", "t_send", "t_recv", "latency_ms", "batch_size", "ok", "error")

EVENT_COLUMNS = (
    "step",
    "users",
    "worker",
    "event",
    "t_start",
    "other_s",
    "module_s",
    "total_s",
    "requests",
    "failed_requests",
)


def iso_utc(unix: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds, the one time format of a run."""
    return (
        dt.datetime.fromtimestamp(unix, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def utc_now() -> str:
    return iso_utc(time.time())


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def check_label(label: str) -> str:
    """A run label becomes part of a folder name under --results: letters, digits, '.',
    '_' and '-', so that no label leaves that folder or nests one `analyze` cannot find."""
    if not _LABEL.fullmatch(label) or ".." in label:
        raise SonicBenchError(
            f"--label {label!r}: use letters, digits, '.', '_' and '-' (up to 80, no '..' "
            "or '/'), e.g. --label gpu-a100"
        )
    return label


def make_run_id(label: str, when: dt.datetime | None = None) -> str:
    check_label(label)
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{label}"


@dataclass(frozen=True)
class Harness:
    version: str
    git_sha: str | None
    pid: int | None = None  # of the process writing the run: tells a live run from a dead one
    git_dirty: bool | None = None  # uncommitted changes in the checkout that ran it
    # Versions of what decides the numbers: python, tritonclient, onnxruntime, numpy,
    # locust, nvidia-pytriton (the embedded tritonserver), grpcio, protobuf.
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Machine:
    hostname: str
    cpu_model: str
    cores: int
    memory_bytes: int
    gpus: tuple[str, ...] = ()
    gpu_driver: str | None = None
    cpu_flags: tuple[str, ...] = ()  # as py-cpuinfo reports them (avx512*, amx* ...)
    os: str = ""


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
        model_version=str(server_info.get("model_version", "1")),
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
    # Every request of avg_batch_size patches (perf_analyzer's -b), not the realistic mix.
    uniform_batches: bool = False
    replayed_batches: int = 0  # distinct batches sent in turn (0: not recorded)
    # What the requests held: source (protodune, random, zero, a file), seed, each input's
    # shape and datatype, the batch sizes (empty in runs before any model could be sent).
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def first_setting(self) -> int:
        """The batch setting of a sweep or Locust run (a baseline's first)."""
        setting = self.batch_size_setting
        return setting if isinstance(setting, int) else int(setting[0])


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
    # VALID when every level is (measure/verdict.py), with every level's reasons; None in
    # runs written before verdicts, and in Locust runs, whose steps are not judged.
    verdict: str | None = None
    verdict_reasons: tuple[str, ...] = ()

    def finished(self, status: RunStatus, warnings: tuple[str, ...] = ()) -> Manifest:
        return replace(
            self, status=status, ended_at=utc_now(), warnings=self.warnings + tuple(warnings)
        )

    def with_warning(self, message: str) -> Manifest:
        return replace(self, warnings=(*self.warnings, message))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest.json") -> Manifest:
        """The manifest as it was written; SchemaError names the file and the field."""
        return load_record(cls, data, source, "")


class SchemaError(SonicBenchError):
    """A results file that does not match the schema."""


_NUMBERS: dict[type, tuple[type, ...]] = {float: (int, float), int: (int,), str: (str,)}


def load_record(cls: type, data: Any, source: str, where: str = "") -> Any:
    """Build dataclass `cls` from parsed JSON, checking every field against its type."""
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: {where or 'the file'} is not an object")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            no_default = f.default is dataclasses.MISSING
            if no_default and f.default_factory is dataclasses.MISSING:
                raise SchemaError(f"{source}: field '{path}' is missing")
            continue
        values[f.name] = _value(hints[f.name], data[f.name], source, path)
    return cls(**values)


def _value(kind: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return load_record(kind, value, source, path)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _value(option, value, source, path)
            except SchemaError:
                continue
        raise SchemaError(f"{source}: field '{path}' = {value!r} is not {_name(kind)}")
    if origin is Literal:
        if value not in typing.get_args(kind):
            allowed = ", ".join(map(repr, typing.get_args(kind)))
            raise SchemaError(f"{source}: field '{path}' = {value!r} is not one of {allowed}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise SchemaError(f"{source}: field '{path}' = {value!r} is not a list")
        item = typing.get_args(kind)[0]
        items = [_value(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{source}: field '{path}' is not an object")
        return value
    if kind is type(None):
        if value is not None:
            raise SchemaError(f"{source}: field '{path}' = {value!r} is not null")
        return None
    if kind is Any:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise SchemaError(f"{source}: field '{path}' = {value!r} is not true or false")
        return value
    accepted = _NUMBERS.get(kind)
    if accepted is None or isinstance(value, bool) or not isinstance(value, accepted):
        raise SchemaError(f"{source}: field '{path}' = {value!r} is not {_name(kind)}")
    return kind(value)


def _name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
