"""Shared by the benchmarks: a server on free ports, interleaved A/B trials, verdicts.

Every figure is a ratio of two things measured in the same run, alternating A and B so
that the machine's noise (it is shared) falls on both sides alike.
"""

from __future__ import annotations

import math
import os
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
def embedded_server(repository: Path | None = None, cpus: set[int] | None = None):
    """A server on free ports; with `cpus`, the server (and every process it starts) on
    those CPUs and this process, with what it starts, on the others, so that the load
    generator's own CPU is not taken from the server's compute."""
    export_onnx(ROOT / "model_repository")
    config = ServerConfig(
        repository=repository or ROOT / "model_repository" / "embedded",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
    )
    every = os.sched_getaffinity(0)
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)  # inherited by the server it starts
        with EmbeddedServer(config).start() as server:
            if cpus:
                os.sched_setaffinity(0, every - cpus)
            yield server
    finally:
        os.sched_setaffinity(0, every)


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


def median_interval(values: list[float], confidence: float = 0.95):
    """A distribution-free interval for the median and its coverage: the order statistics
    k and n-k+1 with the largest k whose coverage (binomial, p = 1/2) is still at least
    `confidence`; the whole range where n is too small for it (5 trials cover 94%)."""
    ordered, n = sorted(values), len(values)
    k = 1
    while k < n // 2 and _median_coverage(n, k + 1) >= confidence:
        k += 1
    return ordered[k - 1], ordered[n - k], _median_coverage(n, k)


def _median_coverage(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n-k+1)) for n draws."""
    outside = sum(math.comb(n, i) for i in range(k)) / 2**n
    return 1 - 2 * outside


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
