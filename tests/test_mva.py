"""Exact MVA of the grid jobs' closed network: against closed forms, a hand calculation,
and a seeded discrete-event simulation of the same network."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from sonic_bench.analysis.mva import (
    ClosedNetwork,
    ServiceRates,
    median_absolute_relative_error,
)
from sonic_bench.errors import SonicBenchError


def _constant(rate: float) -> ServiceRates:
    return ServiceRates((1.0,), (rate,))  # held above its only level: load-independent


def test_one_station_without_think_time_is_min_of_the_bounds():
    """Throughput min(N/D, 1/D) with D the demand: 1/D from one job on."""
    network = ClosedNetwork(0.0, 0.0, 1.0, _constant(4.0))  # D = 0.25 s
    curve = network.solve(10)
    assert curve.events_per_s == pytest.approx(np.minimum(curve.jobs / 0.25, 4.0))
    assert curve.module_s == pytest.approx(curve.jobs * 0.25)  # Little's law: N / X


def test_throughput_lies_below_both_asymptotes_and_approaches_them():
    network = ClosedNetwork(other_s=1.5, preprocess_s=0.5, visits=5, rates=_constant(10.0))
    curve = network.solve(200)
    demand, think = 0.5, 2.0  # 5 visits of 0.1 s; other + preprocessing
    bound = np.minimum(curve.jobs / (demand + think), 1 / demand)
    assert np.all(curve.events_per_s <= bound * (1 + 1e-12))
    assert curve.events_per_s[0] == pytest.approx(1 / (demand + think))
    assert curve.events_per_s[-1] == pytest.approx(1 / demand, rel=1e-6)
    assert network.n_star == pytest.approx((demand + think) / demand)
    # The module time: preprocessing plus the server's share, flat then linear.
    assert curve.module_s[0] == pytest.approx(0.5 + demand)
    assert curve.module_s[-1] == pytest.approx(0.5 + 200 * demand - think, rel=1e-6)


def test_a_station_whose_rate_doubles_with_the_queue_matches_a_hand_calculation():
    """Two jobs, think 1 s, mu(1) = 1/s, mu(2) = 2/s. Birth-death over the jobs at the
    server: pi(1) = 2 pi(0), pi(2) = pi(1) (rate 1 from 1 to 2) / mu(2) = pi(0), so
    pi = (1, 2, 1) / 4; X = 1 x 1/2 + 2 x 1/4 = 1 event/s, and R = N / X - Z = 1 s."""
    rates = ServiceRates((1.0, 2.0), (1.0, 2.0))
    curve = ClosedNetwork(1.0, 0.0, 1.0, rates).solve(2)
    assert curve.events_per_s[1] == pytest.approx(1.0)
    assert curve.module_s[1] == pytest.approx(1.0)
    assert curve.events_per_s[0] == pytest.approx(0.5)  # one job: 1 s at each centre


def _simulate(jobs: int, think_s: float, visits: int, rates: ServiceRates, seed: int):
    """A discrete-event simulation of the same network: exponential think times and
    exponential service whose rate is mu(k) with k requests at the server (processor
    sharing of a load-dependent server: all present progress together). Returns the
    mean time an event's requests spent at the server, and events per second."""
    rng = np.random.default_rng(seed)
    t, events, server_time = 0.0, 0, 0.0
    thinking = [(rng.exponential(think_s), j) for j in range(jobs)]
    heapq.heapify(thinking)
    at_server: dict[int, float] = {}  # job -> when its current event's requests began
    left: dict[int, int] = {}  # job -> requests of its event still to be served
    horizon, warm = 4000.0, 400.0
    while t < horizon:
        k = len(at_server)
        service_rate = float(rates.at(np.array([k]))[0]) if k else 0.0
        next_service = t + rng.exponential(1 / service_rate) if k else np.inf
        next_think = thinking[0][0] if thinking else np.inf
        if next_think <= next_service:
            t, job = heapq.heappop(thinking)
            at_server[job], left[job] = t, visits
            continue
        t = next_service
        job = list(at_server)[rng.integers(k)]  # PS: the completion is anyone's
        left[job] -= 1
        if left[job] == 0:
            began = at_server.pop(job)
            if began > warm:
                events += 1
                server_time += t - began
            heapq.heappush(thinking, (t + rng.exponential(think_s), job))
    return server_time / events, events / (horizon - warm)


def test_mva_agrees_with_a_simulated_closed_network():
    rates = ServiceRates((1.0, 2.0, 4.0, 8.0), (10.0, 16.0, 22.0, 25.0))  # dynamic batching
    network = ClosedNetwork(other_s=1.0, preprocess_s=0.0, visits=3, rates=rates)
    curve = network.solve(40)
    for jobs in (1, 4, 10, 20, 40):
        simulated_s, simulated_rate = _simulate(jobs, 1.0, 3, rates, seed=jobs)
        assert curve.module_s[jobs - 1] == pytest.approx(simulated_s, rel=0.06), jobs
        assert curve.events_per_s[jobs - 1] == pytest.approx(simulated_rate, rel=0.06), jobs


def test_rates_from_a_sweep_interpolate_and_hold_their_last_value():
    rates = ServiceRates.of_levels([1, 2, 4, 4], [100.0, 180.0, 300.0, 340.0], batch=10)
    assert rates.concurrency == (1.0, 2.0, 4.0)
    assert rates.requests_per_s == pytest.approx((10.0, 18.0, 32.0))  # trials: median
    assert rates.at(np.array([1, 3, 4, 64])) == pytest.approx([10.0, 25.0, 32.0, 32.0])
    without_one = ServiceRates((2.0,), (18.0,))
    assert without_one.at(np.array([1.0])) == pytest.approx([9.0])


def test_the_knee_is_where_the_module_time_doubles():
    curve = ClosedNetwork(9.0, 0.0, 1.0, _constant(1.0)).solve(60)
    knee = curve.knee()
    assert curve.module_at([knee])[0] == pytest.approx(2 * curve.module_s[0])
    assert 1 < knee < 60


def test_bad_rates_are_refused():
    with pytest.raises(SonicBenchError):
        ServiceRates((1.0, 2.0), (1.0, 0.0))
    with pytest.raises(SonicBenchError):
        ServiceRates((2.0, 1.0), (1.0, 1.0))


def test_median_absolute_relative_error():
    assert median_absolute_relative_error([1, 2, 4], [1.1, 2, 3]) == pytest.approx(0.1)


def _mva_recursion(jobs: int, think_s: float, visits: float, rates: ServiceRates):
    """Reiser and Lavenberg's load-dependent MVA, as textbooks write it: the solution
    must be the same where its recursion is still precise (few jobs)."""
    mu = rates.at(np.arange(1, jobs + 1, dtype=float))
    marginal, out = np.array([1.0]), []
    for n in range(1, jobs + 1):
        per_visit = float(np.sum(np.arange(1, n + 1) / mu[:n] * marginal))
        x = n / (think_s + visits * per_visit)
        shifted = visits * x / mu[:n] * marginal
        marginal = np.concatenate(([1.0 - shifted.sum()], shifted))
        out.append((x, visits * per_visit))
    return np.array(out)


def test_the_product_form_is_mva_s_solution():
    rates = ServiceRates((1.0, 2.0, 4.0, 8.0), (10.0, 16.0, 22.0, 25.0))
    curve = ClosedNetwork(other_s=0.7, preprocess_s=0.3, visits=3, rates=rates).solve(12)
    expected = _mva_recursion(12, 1.0, 3, rates)
    assert curve.events_per_s == pytest.approx(expected[:, 0], rel=1e-9)
    assert curve.module_s - 0.3 == pytest.approx(expected[:, 1], rel=1e-9)


def test_deep_in_saturation_the_curve_stays_monotone():
    """Where MVA's recursion loses its precision (hundreds of jobs, a fast server), the
    module time keeps rising by the bottleneck's demand per added job."""
    rates = ServiceRates((1.0, 2.0, 4.0, 8.0), (2.3, 4.1, 6.0, 6.3))
    curve = ClosedNetwork(other_s=2.2, preprocess_s=0.14, visits=7, rates=rates).solve(400)
    assert np.all(np.diff(curve.module_s) > 0)
    assert curve.module_s[-1] - curve.module_s[-2] == pytest.approx(7 / 6.3, rel=1e-6)
