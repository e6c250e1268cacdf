"""Shared by the benchmarks: a server on free ports, interleaved A/B trials, verdicts.

Every figure is a ratio of two things measured in the same run, alternating A and B so
that the machine's noise (it is shared) falls on both sides alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sonic_bench.model.repository import export_onnx  # noqa: E402
from sonic_bench.process import free_port  # noqa: E402
from sonic_bench.triton.server import EmbeddedServer, ServerConfig  # noqa: E402


@contextmanager
def embedded_server(repository: Path | None = None):
    export_onnx(ROOT / "model_repository")
    config = ServerConfig(
        repository=repository or ROOT / "model_repository" / "embedded",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    with EmbeddedServer(config).start() as server:
        yield server


def interleaved(trials: int, a: Callable[[], float], b: Callable[[], float]):
    """A and B `trials` times, in turn: A first in even trials, B first in odd ones, so
    that whatever favours the first (or the second) of a pair falls on both; returns both
    lists of measurements, trial by trial."""
    first, second = [], []
    for trial in range(trials):
        if trial % 2:
            second.append(b())
            first.append(a())
        else:
            first.append(a())
            second.append(b())
    return first, second


def trial_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Each trial's A over the B measured beside it."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def rate(work: Callable[[], int], seconds: float) -> float:
    """Units per second of repeating `work` (which returns the units it did) for `seconds`."""
    work()  # warm-up
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        done += work()
    return done / (time.perf_counter() - began)


@dataclass
class Figures:
    failures: int = 0

    def ratio(
        self,
        name: str,
        numerators: list[float],
        denominators: list[float],
        target: float | None = None,
        paired: bool = False,
    ) -> float:
        """The ratio of the two medians, or `paired`: the median of the trials' own ratios
        (each trial's A over the B measured beside it), where a slow phase of the machine
        that falls on one trial moves one ratio, not both medians."""
        if paired:
            value = statistics.median(trial_ratios(numerators, denominators))
        else:
            value = statistics.median(numerators) / statistics.median(denominators)
        self._line(name, value, target, f"{value:.3f}")
        return value

    def value(
        self,
        name: str,
        value: float,
        target: float | None = None,
        fmt: str = "{:,.0f}",
        lower_is_better: bool = False,
    ) -> float:
        self._line(name, value, target, fmt.format(value), lower_is_better)
        return value

    def _line(self, name, value, target, shown, lower_is_better=False) -> None:
        if target is None:
            print(f"{name}: {shown}")
            return
        ok = value <= target if lower_is_better else value >= target
        self.failures += not ok
        sign = "<=" if lower_is_better else ">="
        print(f"{name}: {shown} (target {sign} {target:g}) {'ok' if ok else 'MISSED'}")

    def exit(self) -> None:
        raise SystemExit(1 if self.failures else 0)
