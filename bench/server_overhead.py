"""Issue 2's figures: the Python backend adds little; the transport is fast.

- served throughput with one client at batch ~235 and ~1693, over in-process onnxruntime
  with the same thread count and chunking (target >= 0.85 with the HTTP client; the gRPC
  client is reported beside it: on 2 cores its ~3 ms more per request show);
- the calibration (zero-compute) model with one gRPC client at batch ~1693, patches/s
  (target >= 60,000);
- the baseline's seconds per 55,000-patch event, 1 thread and all threads.

    .venv/bin/python bench/server_overhead.py [--seconds 3] [--trials 5]
"""

from __future__ import annotations

import argparse
import os
from statistics import median

from common import Figures, embedded_server, interleaved, rate

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.measure.baseline import infer, open_session
from sonic_bench.model.emtrackmichel import model_bytes
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.workload.batching import LARGE_BATCH_SETTING, SMALL_BATCH_SETTING
from sonic_bench.workload.detector import PATCHES_PER_EVENT
from sonic_bench.workload.pool import simulated_pool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    figures = Figures()
    model = model_bytes()
    sessions = {1: open_session(model, 1), 0: open_session(model, 0)}
    with embedded_server() as server:
        for setting in (SMALL_BATCH_SETTING, LARGE_BATCH_SETTING):
            batches = [b.patches for b in simulated_pool(setting).sample(16)]
            average = sum(len(b) for b in batches) / len(batches)
            state = {"i": 0}

            def in_process(batches=batches, state=state) -> int:
                state["i"] = (state["i"] + 1) % len(batches)
                infer(sessions[0], batches[state["i"]], 256)
                return len(batches[state["i"]])

            for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
                encoded = EncodedBatches(batches)
                client = InferClient(Endpoint(url, protocol), MODEL_NO_DYNAMIC_BATCHING, encoded)

                def served(client=client, batches=batches, state=state) -> int:
                    state["i"] = (state["i"] + 1) % len(batches)
                    return client.infer(state["i"])

                a, b = interleaved(
                    args.trials,
                    lambda f=served: rate(f, args.seconds),
                    lambda f=in_process: rate(f, args.seconds),
                )
                label = f"batch {average:.0f}, {protocol}"
                figures.value(f"{label}: served inf/s (1 client)", median(a))
                figures.value(f"{label}: in-process inf/s ({os.cpu_count()} threads)", median(b))
                target = 0.85 if protocol == "http" else None
                figures.ratio(f"{label}: served / in-process", a, b, target=target)
                client.close()

            def single(batches=batches, state=state) -> int:
                state["i"] = (state["i"] + 1) % len(batches)
                infer(sessions[1], batches[state["i"]], 256)
                return len(batches[state["i"]])

            one = rate(single, args.seconds)
            figures.value(
                f"batch {average:.0f}: baseline s per {PATCHES_PER_EVENT} patches, 1 thread",
                PATCHES_PER_EVENT / one,
                fmt="{:.1f}",
            )
            figures.value(
                f"batch {average:.0f}: baseline s per {PATCHES_PER_EVENT} patches, all threads",
                PATCHES_PER_EVENT / rate(in_process, args.seconds),
                fmt="{:.1f}",
            )
            if setting == LARGE_BATCH_SETTING:
                exactly_1693 = max(batches, key=len)[:1693]  # the paper's average request
                encoded = EncodedBatches([exactly_1693])
                zero = InferClient(Endpoint(server.grpc_url), MODEL_CALIBRATION, encoded)
                calibration = [
                    rate(lambda z=zero: z.infer(0), args.seconds) for _ in range(args.trials)
                ]
                figures.value(
                    "calibration model, 1 gRPC client, batch 1693: patches/s",
                    median(calibration),
                    target=60_000,
                )
    figures.exit()


if __name__ == "__main__":
    main()
