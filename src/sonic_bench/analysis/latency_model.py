"""The paper's latency model (Section 3.3, Eqs. 1-5), for planning and for fitting.

t_ideal  = (1 - p) t_CPU + t_GPU + t_latency                                  (2)
saturated when N_CPU / N_GPU > t_ideal / t_GPU                                (3)
t_SONIC  = (1 - p) t_CPU + t_GPU [1 + max(0, N_CPU/N_GPU - t_ideal/t_GPU)] + t_latency   (4)
         = t_GPU N_CPU / N_GPU when saturated                                 (5)
with t_latency = t_preprocess + t_transmit + t_travel. The module (EmTrackMichelId) time
is t_SONIC minus the work that is not accelerated, (1 - p) t_CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sonic_bench.errors import SonicBenchError


@dataclass(frozen=True)
class ModelInputs:
    t_cpu: float  # s, CPU-only event time
    p: float  # fraction of t_cpu that is accelerated
    t_gpu: float  # s of server time per event, per server (GPU)
    t_preprocess: float = 0.0
    t_transmit: float = 0.0
    t_travel: float = 0.0
    n_gpu: int = 1

    def __post_init__(self) -> None:
        for name in ("t_cpu", "p", "t_gpu", "t_preprocess", "t_transmit", "t_travel"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                flag = "--" + name.replace("_", "-")
                raise SonicBenchError(f"{flag} {value}: give a finite, non-negative number")
        if not 0 <= self.p <= 1:
            raise SonicBenchError(f"--p {self.p}: the accelerated fraction lies in [0, 1]")
        if self.t_cpu <= 0 or self.t_gpu <= 0:
            raise SonicBenchError("--t-cpu and --t-gpu (or --throughput) must be positive")
        if self.n_gpu < 1:
            raise SonicBenchError(f"--n-gpu {self.n_gpu}: give at least 1")

    @property
    def t_latency(self) -> float:
        return self.t_preprocess + self.t_transmit + self.t_travel

    @property
    def t_other(self) -> float:
        """The event's work that stays on the CPU and is not part of the module."""
        return (1 - self.p) * self.t_cpu

    @property
    def t_ideal(self) -> float:  # Eq. 2
        return self.t_other + self.t_gpu + self.t_latency

    @property
    def cpu_per_gpu(self) -> float:  # Eq. 3's threshold
        return self.t_ideal / self.t_gpu

    @property
    def n_sat(self) -> float:
        return self.n_gpu * self.cpu_per_gpu

    @property
    def module_cpu_only(self) -> float:
        """The module's time without a server: accelerated work plus its preprocessing."""
        return self.p * self.t_cpu + self.t_preprocess

    @property
    def module_unsaturated(self) -> float:
        return self.t_gpu + self.t_latency

    @property
    def module_speedup(self) -> float:
        return self.module_cpu_only / self.module_unsaturated

    @property
    def total_speedup(self) -> float:
        return self.t_cpu / self.t_ideal

    def t_sonic(self, n_cpu: np.ndarray | float) -> np.ndarray:  # Eq. 4
        ratio = np.asarray(n_cpu, dtype=float) / self.n_gpu
        excess = np.maximum(0.0, ratio - self.cpu_per_gpu)
        return self.t_other + self.t_gpu * (1 + excess) + self.t_latency

    def module_time(self, n_cpu: np.ndarray | float) -> np.ndarray:
        return self.t_sonic(n_cpu) - self.t_other


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise SonicBenchError(f"{name} {value}: give a positive number")
    return value


def transmit_seconds(bytes_per_event: float, link_gbps: float) -> float:
    return bytes_per_event * 8 / (_positive("--link-gbps", link_gbps) * 1e9)


def travel_seconds(requests_per_event: float, rtt_ms: float) -> float:
    if not (math.isfinite(rtt_ms) and rtt_ms >= 0):
        raise SonicBenchError(f"--rtt-ms {rtt_ms}: give a non-negative number")
    return _positive("--requests", requests_per_event) * rtt_ms / 1000.0


def gpu_seconds(patches_per_event: float, inferences_per_s_per_gpu: float) -> float:
    patches = _positive("--patches", patches_per_event)
    return patches / _positive("--throughput", inferences_per_s_per_gpu)


PAPER_THROUGHPUT_PER_GPU = 31_000.0  # inferences/s per T4 with dynamic batching (paper)
PAPER_LINK_GBPS = 2.0
PAPER_REQUESTS_PER_EVENT = 32


def model_inputs(
    t_cpu: float,
    p: float,
    patches: float,
    bytes_per_patch: float,
    t_gpu: float | None = None,
    throughput: float | None = None,
    t_preprocess: float = 0.0,
    t_transmit: float | None = None,
    link_gbps: float | None = None,
    t_travel: float | None = None,
    requests: float | None = None,
    rtt_ms: float = 0.0,
    n_gpu: int = 1,
) -> ModelInputs:
    """The model's inputs from what a user knows: a time or a rate, a link or a time, a
    request count and round-trip or a time. Unset choices take the paper's values."""
    if t_gpu is None:
        t_gpu = gpu_seconds(patches, PAPER_THROUGHPUT_PER_GPU if throughput is None else throughput)
    if t_transmit is None:
        link = PAPER_LINK_GBPS if link_gbps is None else link_gbps
        t_transmit = transmit_seconds(patches * bytes_per_patch, link)
    if t_travel is None:
        count = PAPER_REQUESTS_PER_EVENT if requests is None else requests
        t_travel = travel_seconds(count, rtt_ms)
    return ModelInputs(t_cpu, p, t_gpu, t_preprocess, t_transmit, t_travel, n_gpu)
