"""Grid jobs as a closed queueing network, solved exactly (Mean Value Analysis's solution).

N jobs cycle through two centres: a delay centre (the CPU-side work of an event, other
reconstruction and preprocessing: every job has its own core, so it never queues) and the
server, visited V times per event (the event's requests, one after the other). The
server is load-dependent: with k requests in it, it completes mu(k) of them per second.
A sweep measures mu directly: with zero think time and k requests in flight, a closed
loop keeps all k at the server, so its throughput at concurrency k *is* mu(k). Dynamic
batching shows as a mu that keeps rising with k.

Exact MVA for a load-dependent centre (Reiser and Lavenberg, 1980), n = 1 .. N:
    R(n)    = sum_{j=1..n} j / mu(j) p(j-1 | n-1)        residence per visit
    X(n)    = n / (Z + V R(n))                            events per second
    p(j|n)  = V X(n) / mu(j) p(j-1 | n-1),  j = 1 .. n;   p(0|n) = 1 - sum_j p(j|n)
The paper's two asymptotes are this network's bounds (Kleinrock): flat at D + Z for few
jobs, D_max per job past N* = (D + Z) / D_max, with D = V / mu(1), D_max = V / max mu.
The exact curve lies above both and bends smoothly between them; a real server queues
before the asymptotes cross, which the curve shows and the asymptotes cannot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sonic_bench.errors import SonicBenchError

KNEE_FACTOR = 2.0  # the knee read off a curve: where the module takes twice as long


@dataclass(frozen=True)
class ServiceRates:
    """mu(k), requests per second with k requests at the server: measured at the sweep's
    concurrency levels, linear between them, proportional to k below the lowest (no
    queue there), and held at the highest level's rate above it (saturated)."""

    concurrency: tuple[float, ...]
    requests_per_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.concurrency) != len(self.requests_per_s) or not self.concurrency:
            raise SonicBenchError("service rates need one rate per concurrency level")
        if any(not (math.isfinite(r) and r > 0) for r in self.requests_per_s):
            raise SonicBenchError("service rates must be positive and finite")
        if list(self.concurrency) != sorted(set(self.concurrency)) or self.concurrency[0] < 1:
            raise SonicBenchError("service rate levels must be distinct, ascending, from 1")

    @classmethod
    def of_levels(
        cls, concurrency: Sequence[float], inferences_per_s: Sequence[float], batch: float
    ) -> ServiceRates:
        """From a sweep's levels (patches per second) for requests of `batch` patches;
        repeated levels (trials) take their median."""
        by_level: dict[float, list[float]] = {}
        for c, x in zip(concurrency, inferences_per_s, strict=True):
            if math.isfinite(c) and math.isfinite(x) and x > 0:
                by_level.setdefault(float(c), []).append(float(x) / batch)
        levels = sorted(by_level)
        return cls(tuple(levels), tuple(float(np.median(by_level[c])) for c in levels))

    def scaled(self, factors: Sequence[float]) -> ServiceRates:
        return ServiceRates(
            self.concurrency,
            tuple(r * f for r, f in zip(self.requests_per_s, factors, strict=True)),
        )

    def at(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=float)
        low_c, low_r = self.concurrency[0], self.requests_per_s[0]
        inside = np.interp(k, self.concurrency, self.requests_per_s)
        return np.where(k < low_c, low_r * k / low_c, inside)

    @property
    def peak(self) -> float:
        return max(self.requests_per_s)


@dataclass(frozen=True)
class ClosedNetwork:
    other_s: float  # CPU work per event outside the module
    preprocess_s: float  # the module's own CPU work per event (no queue: the job's core)
    visits: float  # requests per event
    rates: ServiceRates

    def __post_init__(self) -> None:
        for name in ("other_s", "preprocess_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SonicBenchError(f"{name} {value}: give a non-negative number")
        if not (math.isfinite(self.visits) and self.visits > 0):
            raise SonicBenchError(f"requests per event {self.visits}: give a positive number")

    @property
    def think_s(self) -> float:
        """The delay centre's time per event: everything a job does off the server."""
        return self.other_s + self.preprocess_s

    @property
    def demand_s(self) -> float:
        """D: the server's time per event with no other job (V / mu(1))."""
        return self.visits / float(self.rates.at(np.array([1.0]))[0])

    @property
    def bottleneck_demand_s(self) -> float:
        """D_max: the server's time per event at its best rate."""
        return self.visits / self.rates.peak

    @property
    def n_star(self) -> float:
        """Kleinrock's saturation point, where the two asymptotes cross."""
        return (self.demand_s + self.think_s) / self.bottleneck_demand_s

    def solve(self, jobs: int) -> MvaCurve:
        """The exact solution for 1 .. jobs jobs.

        MVA's recursion computes p(0 | n) by difference, which loses all precision deep
        in saturation (the curve then wanders). With one delay centre and one
        load-dependent centre the same exact solution has a closed product form, used
        here in logarithms: with k of n jobs at the server,
            p(k | n) ~ Z^(n-k) / (n-k)!  prod_{j<=k} V / mu(j)
        then X(n) = sum_k p(k|n) mu(k) / V and, by Little's law, an event's time at the
        server is E[k | n] / X(n)."""
        if jobs < 1:
            raise SonicBenchError(f"jobs {jobs}: give at least 1")
        mu = self.rates.at(np.arange(1, jobs + 1, dtype=float))  # mu[j-1] = mu(j)
        log_service = np.concatenate(([0.0], np.cumsum(np.log(self.visits / mu))))
        log_factorial = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, jobs + 1)))))
        rate, server = np.empty(jobs), np.empty(jobs)
        for n in range(1, jobs + 1):
            k = np.arange(n + 1)
            if self.think_s > 0:
                weights = (n - k) * math.log(self.think_s) - log_factorial[n - k]
                weights = weights + log_service[: n + 1]
            else:  # no think time: every job is at the server
                weights = np.where(k == n, 0.0, -np.inf)
            p = np.exp(weights - weights.max())
            p /= p.sum()
            x = float(np.sum(p[1:] * mu[:n])) / self.visits
            rate[n - 1], server[n - 1] = x, float(np.sum(k * p)) / x
        return MvaCurve(np.arange(1, jobs + 1), rate, self.preprocess_s + server, self.other_s)


@dataclass(frozen=True)
class MvaCurve:
    jobs: np.ndarray  # 1 .. N
    events_per_s: np.ndarray  # X(n), all jobs together
    module_s: np.ndarray  # preprocessing + V R(n): the module's time per event
    other_s: float

    @property
    def event_s(self) -> np.ndarray:
        return self.other_s + self.module_s

    def module_at(self, jobs: Sequence[float] | np.ndarray) -> np.ndarray:
        """The module time at (possibly fractional) job counts."""
        return np.interp(np.asarray(jobs, dtype=float), self.jobs, self.module_s)

    def knee(self, factor: float = KNEE_FACTOR) -> float | None:
        """The job count where the module time first reaches `factor` times its value
        for one job (interpolated), or None within the curve."""
        target = factor * float(self.module_s[0])
        above = np.nonzero(self.module_s >= target)[0]
        if not above.size:
            return None
        i = int(above[0])
        if i == 0:
            return 1.0
        lo, hi = self.module_s[i - 1], self.module_s[i]
        return float(self.jobs[i - 1] + (target - lo) / (hi - lo))


def median_absolute_relative_error(measured: Sequence[float], predicted: Sequence[float]) -> float:
    """The median over the points of |predicted / measured - 1|."""
    m, p = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    keep = np.isfinite(m) & np.isfinite(p) & (m > 0)
    if not keep.any():
        return math.nan
    return float(np.median(np.abs(p[keep] / m[keep] - 1)))
