"""Issue 4's figures, against the calibration (zero-compute) model:

- the sweep's client reaches >= 90% of a bare tritonclient loop at the same concurrency;
- system shared memory moves >= 3x the patches/s of gRPC at batch ~1693.

    .venv/bin/python bench/harness_overhead.py [--concurrency 4] [--seconds 3] [--trials 5]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient
from common import Figures, embedded_server, interleaved

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.level import Level, MeasurementSettings, measure_level
from sonic_bench.model.emtrackmichel import INPUT_NAME
from sonic_bench.model.repository import MODEL_CALIBRATION
from sonic_bench.workload.batching import LARGE_BATCH_SETTING
from sonic_bench.workload.pool import simulated_pool


def bare_loop(url: str, batch: np.ndarray, concurrency: int, seconds: float) -> float:
    """What a user would write: threads calling client.infer in a loop."""
    done = [0] * concurrency
    stop = threading.Event()

    def worker(i: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        tensor = grpcclient.InferInput(INPUT_NAME, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        while not stop.is_set():
            client.infer(MODEL_CALIBRATION, [tensor])
            done[i] += len(batch)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # warm-up
    start_count, began = sum(done), time.perf_counter()
    time.sleep(seconds)
    rate = (sum(done) - start_count) / (time.perf_counter() - began)
    stop.set()
    for t in threads:
        t.join()
    return rate


def harness(
    endpoint: Endpoint,
    batch: np.ndarray,
    concurrency: int,
    seconds: float,
    model: str = MODEL_CALIBRATION,
) -> float:
    """Inferences/s that the sweep's own measurement reports for one level."""
    settings = MeasurementSettings(window_s=seconds / 3, warmup_s=0.5, max_windows=3)
    with EncodedBatches([batch]) as encoded:
        result = measure_level(
            0,
            Level(concurrency=concurrency),
            lambda: InferClient(endpoint, model, encoded),
            settings,
            None,
        )
    return result.inferences_per_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    figures = Figures()
    batch = simulated_pool(LARGE_BATCH_SETTING).batches[0].patches[:1693]  # the paper's average
    with embedded_server() as server:
        grpc = Endpoint(server.grpc_url)
        ours, bare = interleaved(
            args.trials,
            lambda: harness(grpc, batch, args.concurrency, args.seconds),
            lambda: bare_loop(server.grpc_url, batch, args.concurrency, args.seconds),
        )
        figures.value(f"harness, concurrency {args.concurrency}: patches/s", float(np.median(ours)))
        figures.value("bare tritonclient loop: patches/s", float(np.median(bare)))
        figures.ratio("harness / bare loop", ours, bare, target=0.90)
        shm = Endpoint(server.grpc_url, shared_memory=True)
        with_shm, plain = interleaved(
            args.trials,
            lambda: harness(shm, batch, 1, args.seconds),
            lambda: harness(grpc, batch, 1, args.seconds),
        )
        figures.value(f"shared memory, batch {len(batch)}: patches/s", float(np.median(with_shm)))
        figures.value(f"gRPC, batch {len(batch)}: patches/s", float(np.median(plain)))
        figures.ratio("shared memory / gRPC", with_shm, plain, target=3.0)
    figures.exit()


if __name__ == "__main__":
    main()
