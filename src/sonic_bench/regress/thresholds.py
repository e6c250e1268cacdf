"""The thresholds file (TOML), validated: what to compare, which way is worse, how much.

[defaults]
alpha = 0.05              # one-sided significance level
normalize = "reference"   # divide by the in-process reference of the same trial

[metrics.inferences_per_s]
direction = "higher"      # higher is better
tolerance = 0.10          # fail when worse by more than 10% and significantly so
levels = [1, 4]           # optional: only these concurrency levels (default: all)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sonic_bench.errors import SonicBenchError

Direction = Literal["higher", "lower"]
# Metrics a run records per level, and which way is better.
KNOWN_METRICS: dict[str, Direction] = {
    "inferences_per_s": "higher",
    "requests_per_s": "higher",
    "latency_ms_avg": "lower",
    "latency_ms_p50": "lower",
    "latency_ms_p90": "lower",
    "latency_ms_p95": "lower",
    "latency_ms_p99": "lower",
    "server_queue_us": "lower",
    "server_compute_infer_us": "lower",
    "server_batch_avg": "higher",
}
NORMALIZATIONS = ("none", "reference")


@dataclass(frozen=True)
class Threshold:
    metric: str
    direction: Direction
    tolerance: float
    normalize: str
    alpha: float
    levels: tuple[float, ...] | None


def _fail(path: Path, message: str) -> SonicBenchError:
    return SonicBenchError(f"{path}: {message}")


def _threshold(path: Path, name: str, table: dict, defaults: dict) -> Threshold:
    if name not in KNOWN_METRICS:
        known = ", ".join(KNOWN_METRICS)
        raise _fail(path, f"unknown metric {name!r}: use one of {known}")
    unknown = set(table) - {"direction", "tolerance", "normalize", "alpha", "levels"}
    if unknown:
        raise _fail(path, f"[metrics.{name}] has unknown keys {sorted(unknown)}")
    direction = table.get("direction", KNOWN_METRICS[name])
    if direction not in ("higher", "lower"):
        raise _fail(path, f"[metrics.{name}] direction must be 'higher' or 'lower'")
    tolerance = table.get("tolerance")
    if not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
        raise _fail(path, f"[metrics.{name}] needs tolerance, a fraction in [0, 1), e.g. 0.1")
    normalize = table.get("normalize", defaults.get("normalize", "none"))
    if normalize not in NORMALIZATIONS:
        raise _fail(path, f"[metrics.{name}] normalize must be one of {NORMALIZATIONS}")
    alpha = table.get("alpha", defaults.get("alpha", 0.05))
    if not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise _fail(path, f"[metrics.{name}] alpha must be in (0, 0.5)")
    levels = table.get("levels")
    if levels is not None and (
        not isinstance(levels, list) or not all(isinstance(v, int | float) for v in levels)
    ):
        raise _fail(path, f"[metrics.{name}] levels must be a list of numbers")
    return Threshold(
        name,
        direction,
        float(tolerance),
        normalize,
        float(alpha),
        tuple(float(v) for v in levels) if levels is not None else None,
    )


def read_thresholds_file(path: Path) -> dict:
    """The thresholds file's tables ([metrics], [accuracy], ...), or one clear error."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SonicBenchError(f"thresholds file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, f"not valid TOML ({e})") from None


def load_thresholds(path: Path) -> list[Threshold]:
    data = read_thresholds_file(path)
    unknown = set(data) - {"defaults", "metrics", "accuracy"}  # accuracy: regress/accuracy.py
    if unknown:
        raise _fail(
            path,
            f"unknown sections {sorted(unknown)}: use [defaults], [metrics.NAME] and [accuracy]",
        )
    metrics = data.get("metrics", {})
    if not metrics:
        raise _fail(path, "no [metrics.NAME] tables: nothing to check")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _fail(path, "[defaults] must be a table")
    unknown = set(defaults) - {"alpha", "normalize"}
    if unknown:
        # A typo here (normalise, alpah) would silently change what every verdict means.
        raise _fail(path, f"[defaults] has unknown keys {sorted(unknown)}: use alpha, normalize")
    if not isinstance(metrics, dict) or not all(isinstance(t, dict) for t in metrics.values()):
        raise _fail(
            path, "[metrics] must hold one table per metric, e.g. [metrics.inferences_per_s]"
        )
    return [_threshold(path, name, table, defaults) for name, table in metrics.items()]
