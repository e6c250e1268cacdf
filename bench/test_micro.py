"""pytest-benchmark micro-benchmarks of the harness's hot paths.

    make bench-micro    # compares with the saved baseline, fails past the limits

Saved runs live in bench/.benchmarks (committed); `make bench-micro-save` records anew.
"""

from __future__ import annotations

import numpy as np
import pytest

from sonic_bench.analysis.saturation_fit import analyse_saturation
from sonic_bench.engine.client import EncodedBatches
from sonic_bench.measure.windows import assess, window_stats
from sonic_bench.workload.event import simulate_event
from sonic_bench.workload.patches import cut_patches


@pytest.fixture(scope="module")
def event():
    return simulate_event(seed=1234, index=0, scale=0.2)


def test_patch_building(benchmark, event):
    (apa, plane), image = next(iter(event.images.items()))
    hits = event.hits[(event.hits["apa"] == apa) & (event.hits["plane"] == plane)]
    patches = benchmark(cut_patches, image, hits["wire"], hits["tick"])
    assert patches.shape == (len(hits), 48, 48, 1)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_request_encoding(benchmark, protocol):
    batch = np.random.default_rng(0).uniform(0, 5, (1693, 48, 48, 1)).astype(np.float32)
    encoded = benchmark(EncodedBatches, protocol, [batch], False)
    assert len(encoded) == 1


def test_window_statistics(benchmark):
    rng = np.random.default_rng(0)
    n = 200_000
    t_recv = np.sort(rng.uniform(0, 60, n))
    latency, batch, ok = rng.lognormal(3, 0.4, n), np.full(n, 235), np.ones(n, bool)

    def windows():
        stats = [window_stats(t_recv, latency, batch, ok, s, s + 5) for s in range(0, 60, 5)]
        return assess(stats)

    assert benchmark(windows) is not None


def test_knee_fit_on_a_large_run(benchmark):
    rng = np.random.default_rng(0)
    users = np.repeat([1, 2, 5, 10, 20, 50, 100, 200, 300, 400], 500).astype(float)
    module = np.maximum(13, 0.45 * users - 110) * (1 + rng.normal(0, 0.05, len(users)))
    result = benchmark(analyse_saturation, users, module, 110.0)
    assert result.saturated
