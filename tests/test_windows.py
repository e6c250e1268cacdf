"""Window and stability logic on recorded timestamps (pure functions, no sleeping)."""

import numpy as np

from sonic_bench.analysis.throughput import saturation
from sonic_bench.measure.windows import Stability, StabilityRule, WindowStats, assess, window_stats


def windows(throughputs, latencies, requests=20, length=1.0):
    """Windows whose p99 and average latency are both `latencies` (what the rule judges)."""
    return [
        WindowStats(i * length, (i + 1) * length, requests, int(t * length), 0, p, p)
        for i, (t, p) in enumerate(zip(throughputs, latencies, strict=True))
    ]


def test_a_swinging_p99_with_a_steady_average_is_stable_by_default_not_by_p99():
    steady = [WindowStats(i, i + 1, 80, 10_000, 0, p99, 20.0) for i, p99 in enumerate((56, 80, 62))]
    assert assess(steady) is Stability.STABLE  # perf_analyzer's default: average latency
    assert assess(steady, StabilityRule(latency="p99")) is Stability.UNSTABLE


def test_three_agreeing_windows_are_stable():
    assert assess(windows([1000, 1040, 980], [50, 52, 49])) is Stability.STABLE


def test_throughput_disagreement_is_unstable():
    assert assess(windows([1000, 1300, 980], [50, 52, 49])) is Stability.UNSTABLE


def test_p99_disagreement_is_unstable():
    assert assess(windows([1000, 1000, 1000], [50, 80, 49])) is Stability.UNSTABLE


def test_only_the_last_windows_count():
    assert assess(windows([400, 1000, 1040, 980], [200, 50, 52, 49])) is Stability.STABLE


def test_fewer_windows_than_the_rule_needs_is_unstable():
    assert assess(windows([1000, 1000], [50, 50])) is Stability.UNSTABLE


def test_too_few_requests_asks_for_longer_windows():
    few = windows([1000, 1000, 1000], [50, 50, 50], requests=2)
    assert assess(few, StabilityRule(min_requests=5)) is Stability.TOO_FEW


def test_windows_too_short_to_judge_are_left_out_once_lengthened():
    short = windows([400], [80], requests=4)
    lengthened = windows([1000, 1040, 980], [50, 52, 49], requests=40)
    assert assess(short + lengthened, StabilityRule(min_requests=20)) is Stability.STABLE
    assert assess(short + lengthened[:2], StabilityRule(min_requests=20)) is Stability.UNSTABLE


def test_window_stats_counts_completions_inside_the_window():
    t_recv = np.array([0.1, 0.5, 0.99, 1.0, 1.5])
    latency = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    batch = np.array([100, 100, 100, 100, 100])
    ok = np.array([True, True, False, True, True])
    w = window_stats(t_recv, latency, batch, ok, 0.0, 1.0)
    assert (w.requests, w.inferences, w.errors) == (2, 200, 1)
    assert w.throughput == 200.0
    assert 10.0 <= w.p99_ms <= 20.0


def test_saturation_and_knee():
    sat = saturation([1, 2, 4, 8], [500, 960, 1000, 990])
    assert sat.max_inferences_per_s == 1000 and sat.at_concurrency == 4
    assert sat.knee_concurrency == 2
