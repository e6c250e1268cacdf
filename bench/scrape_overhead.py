"""Issue 6's figure: the embedded server's throughput with Prometheus scraping every second
is within 3% of its throughput without (interleaved trials, same run).

    .venv/bin/python bench/scrape_overhead.py [--trials 5] [--seconds 4]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import Figures, embedded_server, interleaved
from harness_overhead import harness

from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.metrics.recording import MetricsOptions, RunMetrics
from sonic_bench.model.repository import MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.process import free_port
from sonic_bench.workload.batching import SMALL_BATCH_SETTING
from sonic_bench.workload.pool import simulated_pool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    figures = Figures()
    batch = simulated_pool(SMALL_BATCH_SETTING).batches[0].patches
    with embedded_server() as server:
        endpoint = Endpoint(server.grpc_url)

        def served() -> float:
            return harness(endpoint, batch, 2, args.seconds, MODEL_NO_DYNAMIC_BATCHING)

        def with_collection() -> float:
            options = MetricsOptions(mode="prometheus", prometheus_port=free_port())
            with RunMetrics(options, server.metrics_url) as metrics:
                assert metrics.info().source == "prometheus", metrics.warnings
                return served()

        on, off = interleaved(args.trials, with_collection, served)
        figures.value("throughput with Prometheus (inf/s)", float(np.median(on)))
        figures.value("throughput without (inf/s)", float(np.median(off)))
        figures.ratio("with / without collection", on, off, target=0.97)
    figures.exit()


if __name__ == "__main__":
    main()
