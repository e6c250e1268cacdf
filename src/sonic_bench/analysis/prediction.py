"""The paper's latency model fed with measurements: where will grid jobs saturate a server?

The paper computed its knee by hand from a standalone throughput and a job's CPU profile.
Here the inputs come from run folders:

- a sweep (same model, batch setting and, preferably, protocol as the jobs): the
  server's saturated throughput X, the median of the levels that reach 95% of the best
  (the plateau; the maximum alone is biased upward by noise), and the mean latency of
  one request with nothing else in flight (the sweep's lowest level, lat_1);
- a baseline: in-process inference on one CPU thread, for the CPU-only module time;
- the jobs' settings (a planned staircase, or a Locust run's manifest): other work,
  preprocessing, requests and patches per event.

With P patches and n requests per event:
    t_GPU     = P / X                      server time per event, per server
    t_latency = t_preprocess + (n lat_1 - t_GPU)   transmit and travel: what an unloaded
                                           event's requests take beyond the server's share
    t_ideal   = t_other + t_preprocess + n lat_1   (Eq. 2)
    N_sat     = t_ideal / t_GPU                    (Eq. 3), slope past it t_GPU (Eq. 5)
N_sat grows with X and with lat_1, so its interval is the model evaluated at both ends of
theirs: X over the plateau's levels, each +-2 standard errors (relative error of a
closed-loop level's throughput ~ that of its mean latency), lat_1 +-2 standard errors.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sonic_bench.analysis.latency_model import ModelInputs
from sonic_bench.analysis.mva import KNEE_FACTOR, ClosedNetwork, MvaCurve, ServiceRates
from sonic_bench.analysis.runs import LoadedRun
from sonic_bench.analysis.throughput import KNEE_FRACTION
from sonic_bench.errors import SonicBenchError
from sonic_bench.results.schema import Manifest
from sonic_bench.workload.detector import PATCHES_PER_EVENT

STANDARD_ERRORS = 2.0


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class ServerCapacity:
    """What a sweep says about the server for one model and batch setting."""

    run_id: str
    model: str
    batch_setting: int
    avg_batch: float
    protocol: str
    inferences_per_s: Interval  # saturated throughput
    request_latency_s: Interval  # mean latency of one request alone in flight
    latency_concurrency: float  # the level lat_1 was read at (1 when the sweep had it)
    event_patches: float  # patches in the sweep's simulated event
    plateau: tuple[float, ...]  # concurrency levels that reached 95% of the best
    warnings: tuple[str, ...] = ()
    # Every closed-loop level: (concurrency, inferences/s, relative standard error), the
    # server's rate per queue length for the queueing network (`mva`).
    levels: tuple[tuple[float, float, float], ...] = ()
    saturated: bool = True  # the best level was not the highest one

    def service_rates(self, batch: float, standard_errors: float = 0.0) -> ServiceRates:
        """mu(k) for requests of `batch` patches, each level moved by that many standard
        errors (negative: slower)."""
        concurrency = [c for c, _, _ in self.levels]
        rates = [x * max(1e-9, 1 + standard_errors * e) for _, x, e in self.levels]
        return ServiceRates.of_levels(concurrency, rates, batch)


def _relative_error(row: pd.Series) -> float:
    """Standard error of a level's mean latency, relative; closed-loop throughput is
    concurrency / mean latency (Little's law), so its relative error is the same."""
    std, mean, count = row.get("latency_ms_std"), row.get("latency_ms_avg"), row.get("requests")
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (std, mean, count)):
        return 0.0
    if mean <= 0 or count < 1:
        return 0.0
    return float(std / (mean * math.sqrt(count)))


def capacity_from_steps(steps: pd.DataFrame, manifest: Manifest) -> ServerCapacity:
    closed = steps.dropna(subset=["concurrency", "inferences_per_s"])
    closed = closed[closed.inferences_per_s > 0]
    if closed.empty:
        raise SonicBenchError(
            f"sweep {manifest.run_id} has no closed-loop level with answers: "
            "measure one with `sonic-bench sweep --concurrency 1-64`"
        )
    best = float(closed.inferences_per_s.max())
    plateau = closed[closed.inferences_per_s >= KNEE_FRACTION * best]
    errors = plateau.apply(_relative_error, axis=1)
    x = plateau.inferences_per_s
    throughput = Interval(
        float(x.median()),
        float((x * (1 - STANDARD_ERRORS * errors)).min()),
        float((x * (1 + STANDARD_ERRORS * errors)).max()),
    )
    lowest_level = float(closed.concurrency.min())
    lowest = closed[closed.concurrency == lowest_level]
    latency_s = float(lowest.latency_ms_avg.mean()) / 1000
    se = float(lowest.apply(_relative_error, axis=1).mean()) * latency_s
    warnings = []
    top = float(closed.concurrency.max())
    at_top = float(closed.loc[closed.inferences_per_s.idxmax(), "concurrency"]) == top
    if at_top and len(closed) > 1:
        warnings.append(
            f"sweep {manifest.run_id} was still at its best at its highest level "
            f"({top:g}): the server may not have saturated, so X and N_sat may be low"
        )
    if lowest_level > 1:
        warnings.append(
            f"sweep {manifest.run_id} has no concurrency-1 level: the unloaded request "
            f"latency was read at concurrency {lowest_level:g} (queueing included)"
        )
    return ServerCapacity(
        run_id=manifest.run_id,
        model=manifest.server.model,
        batch_setting=manifest.workload.first_setting,
        avg_batch=manifest.workload.avg_batch_size,
        protocol=manifest.server.protocol,
        inferences_per_s=throughput,
        request_latency_s=Interval(
            latency_s, latency_s - STANDARD_ERRORS * se, latency_s + STANDARD_ERRORS * se
        ),
        latency_concurrency=lowest_level,
        event_patches=float(manifest.workload.patches_per_event or PATCHES_PER_EVENT),
        plateau=tuple(sorted(float(c) for c in plateau.concurrency.unique())),
        warnings=tuple(warnings),
        levels=tuple(
            (float(row.concurrency), float(row.inferences_per_s), _relative_error(row))
            for _, row in closed.sort_values("concurrency").iterrows()
        ),
        saturated=not (at_top and len(closed) > 1),
    )


def _check_job_settings(event_scale: float, other_full_s: float, preprocess_full_s: float):
    if not 0 < event_scale <= 1:
        raise SonicBenchError(f"--event-scale {event_scale}: use a value in (0, 1]")
    for flag, value in (
        ("--other-seconds", other_full_s),
        ("--preprocess-seconds", preprocess_full_s),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise SonicBenchError(f"{flag} {value}: give a finite, non-negative number")


@dataclass(frozen=True)
class JobPlan:
    """One grid job's event, at the scale the jobs run: what the model needs of it."""

    other_s: float  # non-ML work per event (mean)
    preprocess_s: float
    requests: float  # per event
    patches: float  # per event
    protocol: str | None = None  # how the jobs reach the server, when known

    @classmethod
    def planned(
        cls,
        avg_batch: float,
        event_patches: float,
        event_scale: float,
        other_full_s: float,
        preprocess_full_s: float,
        protocol: str | None = None,
    ) -> JobPlan:
        """A planned Locust run: as `loadgen.scale.plan_events` reduces a simulated event
        of `event_patches`, keeping a fraction of its requests and the CPU work of the
        patches they hold (against a full event's 55,000)."""
        _check_job_settings(event_scale, other_full_s, preprocess_full_s)
        requests = max(1, round(event_patches / avg_batch * event_scale))
        fraction = requests * avg_batch / PATCHES_PER_EVENT
        return cls.reduced(requests, fraction, avg_batch, other_full_s, preprocess_full_s, protocol)

    @classmethod
    def planned_model(
        cls,
        avg_batch: float,
        requests_per_event: int,
        event_scale: float,
        other_full_s: float,
        preprocess_full_s: float,
        protocol: str | None = None,
    ) -> JobPlan:
        """A planned Locust run of a model not fed the ProtoDUNE-SP workload: as
        `loadgen.scale.plan_model_events` reduces `requests_per_event` requests."""
        _check_job_settings(event_scale, other_full_s, preprocess_full_s)
        if requests_per_event < 1:
            raise SonicBenchError(f"--requests-per-event {requests_per_event}: give 1 or more")
        requests = max(1, round(requests_per_event * event_scale))
        fraction = requests / requests_per_event
        return cls.reduced(requests, fraction, avg_batch, other_full_s, preprocess_full_s, protocol)

    @classmethod
    def reduced(
        cls,
        requests: int,
        fraction: float,
        avg_batch: float,
        other_full_s: float,
        preprocess_full_s: float,
        protocol: str | None,
    ) -> JobPlan:
        """`requests` of a full event, with `fraction` of its CPU work."""
        return cls(
            other_full_s * fraction,
            preprocess_full_s * fraction,
            requests,
            requests * avg_batch,
            protocol,
        )

    @classmethod
    def of_run(cls, manifest: Manifest) -> JobPlan:
        """What a Locust run's jobs did, from its manifest."""
        parameters = manifest.load.parameters
        requests = float(parameters["requests_per_event"])
        return cls(
            float(parameters["other_s_per_event"]),
            float(parameters.get("preprocess_s_per_event", 0.0)),
            requests,
            requests * manifest.workload.avg_batch_size,
            parameters.get("protocol"),
        )


MIN_CURVE_LEVELS = 3  # concurrency levels a sweep needs for the queueing network


@dataclass(frozen=True)
class CurvePrediction:
    """The module and event time at every job count, from exact MVA of the jobs' closed
    network with the sweep's rates (`mva.py`), and at the ends of the sweep's interval."""

    central: MvaCurve
    fast: MvaCurve  # every level's rate 2 standard errors up: the lower module time
    slow: MvaCurve
    n_star: float  # where the asymptotes of this network cross (Kleinrock)
    knee: float | None  # where the central module time reaches KNEE_FACTOR x alone

    def at(self, jobs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Module time (central, low, high) at these job counts."""
        return (
            self.central.module_at(jobs),
            self.fast.module_at(jobs),
            self.slow.module_at(jobs),
        )

    def as_json(self) -> dict:
        return {
            "jobs": self.central.jobs.tolist(),
            "module_s": self.central.module_s.tolist(),
            "module_s_low": self.fast.module_s.tolist(),
            "module_s_high": self.slow.module_s.tolist(),
            "event_s": self.central.event_s.tolist(),
            "n_star": self.n_star,
            "knee": self.knee,
            "knee_factor": KNEE_FACTOR,
        }


@dataclass(frozen=True)
class Prediction:
    capacity: ServerCapacity
    plan: JobPlan
    model: ModelInputs  # the paper's model at the central values
    n_sat: Interval
    cpu_module_s: float | None  # the module on one CPU thread, from the baseline
    baseline_run: str | None
    warnings: tuple[str, ...] = ()

    @property
    def flat_module_s(self) -> float:
        return self.model.module_unsaturated

    @property
    def slope_s_per_client(self) -> float:
        return self.model.t_gpu

    @property
    def t_ideal_s(self) -> float:
        return self.model.t_ideal

    @property
    def module_speedup(self) -> float | None:
        """As a Locust run's measured speedup: the module on one CPU thread (inference
        and preprocessing) against the unsaturated module time."""
        return self.cpu_module_s / self.flat_module_s if self.cpu_module_s else None

    @property
    def cpu_event_s(self) -> float | None:
        return self.plan.other_s + self.cpu_module_s if self.cpu_module_s else None

    @property
    def total_speedup(self) -> float | None:
        return self.cpu_event_s / self.t_ideal_s if self.cpu_event_s else None

    def servers_for(self, jobs: int) -> tuple[int, int]:
        """Servers needed so that `jobs` stay below the knee: at the central N_sat and at
        the low end of its interval (the cautious count)."""
        return math.ceil(jobs / self.n_sat.value), math.ceil(jobs / max(self.n_sat.low, 1e-9))

    def module_time(self, users: np.ndarray) -> np.ndarray:
        return self.model.module_time(users)

    def curve_problem(self) -> str | None:
        """Why the queueing network cannot be fed from this sweep, if it cannot."""
        c = self.capacity
        if len(c.levels) < MIN_CURVE_LEVELS:
            return (
                f"the sweep {c.run_id} has {len(c.levels)} concurrency levels, the queueing "
                f"network needs {MIN_CURVE_LEVELS} or more: only the asymptotes are predicted"
            )
        if not c.saturated:
            return (
                f"the sweep {c.run_id} did not saturate (its best level was its highest): "
                "the server's rate past it is unknown, so only the asymptotes are predicted"
            )
        return None

    def curve(self, jobs: int) -> CurvePrediction | None:
        """The whole curve for 1 .. jobs jobs, or None where the sweep cannot feed it."""
        if self.curve_problem() is not None:
            return None
        batch = self.plan.patches / self.plan.requests

        def solved(errors: float) -> MvaCurve:
            return self._network(self.capacity.service_rates(batch, errors)).solve(jobs)

        central = solved(0.0)
        network = self._network(self.capacity.service_rates(batch))
        return CurvePrediction(
            central,
            solved(STANDARD_ERRORS),
            solved(-STANDARD_ERRORS),
            network.n_star,
            central.knee(),
        )

    def _network(self, rates: ServiceRates) -> ClosedNetwork:
        return ClosedNetwork(self.plan.other_s, self.plan.preprocess_s, self.plan.requests, rates)

    def n_sat_at(self, inferences_per_s: float) -> float:
        """The knee had the server offered this throughput instead of the sweep's (to
        ask of a run: does the model hold with the capacity the server really gave?)."""
        return _inputs(
            self.plan, inferences_per_s, self.capacity.request_latency_s.value, None
        ).n_sat


def _inputs(
    plan: JobPlan, throughput: float, latency_s: float, cpu_ml_s: float | None
) -> ModelInputs:
    t_gpu = plan.patches / throughput
    travel = max(0.0, plan.requests * latency_s - t_gpu)
    t_cpu = plan.other_s + (cpu_ml_s or 0.0)
    p = (cpu_ml_s or 0.0) / t_cpu if t_cpu > 0 else 0.0
    # Without a baseline the accelerated part is unknown; the knee does not need it.
    return ModelInputs(
        t_cpu=max(t_cpu, 1e-12),
        p=p,
        t_gpu=t_gpu,
        t_preprocess=plan.preprocess_s,
        t_transmit=0.0,
        t_travel=travel,
    )


def predict(
    capacity: ServerCapacity,
    plan: JobPlan,
    single_thread_inferences_per_s: float | None = None,
    baseline_run: str | None = None,
) -> Prediction:
    cpu_ml = (
        plan.patches / single_thread_inferences_per_s if single_thread_inferences_per_s else None
    )
    x, lat = capacity.inferences_per_s, capacity.request_latency_s
    central = _inputs(plan, x.value, lat.value, cpu_ml)
    low = _inputs(plan, max(x.low, 1e-9), max(lat.low, 0.0), cpu_ml).n_sat
    high = _inputs(plan, x.high, lat.high, cpu_ml).n_sat
    warnings = list(capacity.warnings)
    if plan.protocol and plan.protocol != capacity.protocol:
        warnings.append(
            f"the sweep {capacity.run_id} used {capacity.protocol}, the jobs use "
            f"{plan.protocol}: per-request latency and throughput may differ"
        )
    return Prediction(
        capacity,
        plan,
        central,
        Interval(central.n_sat, min(low, central.n_sat), max(high, central.n_sat)),
        cpu_ml + plan.preprocess_s if cpu_ml is not None else None,
        baseline_run,
        tuple(warnings),
    )


def matching_sweep(
    sweeps: Sequence[LoadedRun], model: str, batch_setting: int, protocol: str | None
) -> LoadedRun | None:
    """The latest sweep of this model and batch setting, over the jobs' protocol and
    without shared memory (as jobs reach a server) when there is one."""
    same = [
        r
        for r in sweeps
        if r.manifest.server.model == model and r.manifest.workload.first_setting == batch_setting
    ]
    alike = [
        r
        for r in same
        if r.manifest.server.protocol == protocol and not r.manifest.load.shared_memory
    ]
    chosen = alike or same
    return max(chosen, key=lambda r: r.manifest.started_at) if chosen else None
