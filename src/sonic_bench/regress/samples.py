"""Per-level samples of each metric, from a run folder or an exported baseline file.

Each trial of a level (sweep --repeat) gives one sample. With normalize = "reference",
throughputs are divided by the run's in-process reference (measured before every trial,
the median taken), and times are expressed in units of the reference's time for one
request's batch: a machine that is 20% slower moves both, and their ratio stays.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sonic_bench.errors import SonicBenchError
from sonic_bench.regress.thresholds import KNOWN_METRICS, Threshold
from sonic_bench.results.machine import differences
from sonic_bench.results.schema import Manifest, load_record
from sonic_bench.results.store import read_run

BASELINE_FORMAT = "sonic-bench-baseline"
IDENTITY = ("model", "protocol", "batch_size_setting", "dynamic_batching", "shared_memory")


@dataclass(frozen=True)
class RunSamples:
    source: str
    identity: dict[str, object]
    avg_batch_size: float
    rows: list[dict] = field(default_factory=list)  # steps.csv rows, as numbers
    manifest: dict | None = None  # the run's manifest: what it ran on and with

    def set_up_differences(self, other: RunSamples) -> list[str]:
        """How the two set-ups differ (versions, CPU, GPU, commit); empty when either
        does not say (a baseline file exported before manifests were kept)."""
        if self.manifest is None or other.manifest is None:
            return []
        mine = Manifest.from_dict(self.manifest, self.source)
        return differences(mine, Manifest.from_dict(other.manifest, other.source))

    @property
    def status(self) -> str | None:
        """The run's status as its manifest says (None: a baseline file that kept none)."""
        return None if self.manifest is None else self.manifest.get("status")

    def incomplete(self) -> str | None:
        """Why this run's figures cannot be judged as they stand: it is not `complete`
        (requests failed, a level ended early, the server was shared, it still runs or
        was killed). None for a complete run."""
        if self.status == "complete":
            return None
        warnings = (self.manifest or {}).get("warnings") or []
        reasons = "; ".join(warnings[-3:]) if warnings else "no reason recorded"
        return f"{self.source} is {self.status or 'of unknown status'} ({reasons})"

    def invalid(self) -> str | None:
        """Why this run's levels are not VALID (measure/verdict.py), or None: VALID, or a
        run written before verdicts."""
        manifest = self.manifest or {}
        if manifest.get("verdict") in (None, "VALID"):
            return None
        reasons = manifest.get("verdict_reasons") or []
        more = f"; {len(reasons) - 3} more" if len(reasons) > 3 else ""
        return f"{self.source} is INVALID ({'; '.join(reasons[:3]) or 'no reason recorded'}{more})"

    @property
    def reference(self) -> float | None:
        """The run's in-process reference: the median over all its trials. One trial's
        reference is noisy on a busy machine (another job takes a core from its threads
        at random) while the served throughput is not; the median keeps what the
        reference is for, the machine's speed, and drops that noise."""
        values = [r["reference_inferences_per_s"] for r in self.rows]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def samples(self, threshold: Threshold) -> dict[float, list[float]]:
        out: dict[float, list[float]] = {}
        reference = self.reference
        for row in self.rows:
            level = row.get("concurrency")
            value = _normalized(row, threshold, reference)
            if level is None or value is None:
                continue
            if threshold.levels is None or level in threshold.levels:
                out.setdefault(float(level), []).append(value)
        return out

    def export(self, path: Path) -> Path:
        path.write_text(json.dumps({"format": BASELINE_FORMAT, **asdict(self)}, indent=1))
        return path


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _normalized(row: dict, threshold: Threshold, reference: float | None) -> float | None:
    value = row.get(threshold.metric)
    if value is None or threshold.normalize == "none":
        return value
    batch = row.get("batch_size")
    if reference is None or not batch:
        return None
    if threshold.metric == "server_batch_avg":
        return value  # a count of patches: nothing to normalise
    if threshold.metric == "inferences_per_s":
        return value / reference
    if threshold.metric == "requests_per_s":
        return value * batch / reference
    unit_ms = batch / reference * 1000.0  # the reference's time for one request's batch
    scale = 1000.0 if threshold.metric.endswith("_us") else 1.0
    return value / (unit_ms * scale)


def from_run(folder: Path) -> RunSamples:
    stored = read_run(folder)
    m = stored.manifest
    if not stored.steps:
        raise SonicBenchError(f"{folder}: no finished levels to compare")
    columns = ("concurrency", "batch_size", "reference_inferences_per_s", *KNOWN_METRICS)
    rows = [{c: _number(r.get(c)) for c in columns} for r in stored.steps]
    identity = {
        "model": m.server.model,
        "protocol": m.server.protocol,
        "batch_size_setting": m.workload.batch_size_setting,
        "dynamic_batching": m.server.dynamic_batching,
        "shared_memory": m.load.shared_memory,
    }
    return RunSamples(m.run_id, identity, float(m.workload.avg_batch_size), rows, m.to_dict())


def load_samples(path: Path) -> RunSamples:
    if not path.exists():
        raise SonicBenchError(f"baseline {path} not found: give a run folder or a baseline file")
    if path.is_dir():
        return from_run(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SonicBenchError(f"baseline file {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.pop("format", None) != BASELINE_FORMAT:
        raise SonicBenchError(f"{path} is not a sonic-bench baseline file")
    return load_record(RunSamples, data, str(path))
