"""Issue 29's figure: what keeping every answer costs. The same event's batches sent once
each (`EachOnce`, the accuracy mode's load) with every answer decoded and kept, and
without, alternating trial by trial, at one concurrency, for the zero-compute model (the
client's cost laid bare) and the FP32 CNN (what an accuracy run pays).

    .venv/bin/python bench/accuracy_overhead.py [--trials 5] [--concurrency 4]
"""

from __future__ import annotations

import argparse

from common import ROOT, Figures

from sonic_bench.engine.client import EncodedBatches, InferClient
from sonic_bench.engine.endpoint import Endpoint
from sonic_bench.engine.loop import EachOnce
from sonic_bench.measure.records import Clock
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_DYNAMIC_BATCHING, export_onnx
from sonic_bench.process import free_port
from sonic_bench.triton.server import EmbeddedServer, ServerConfig
from sonic_bench.workload.batching import SMALL_BATCH_SETTING
from sonic_bench.workload.pool import event_batches


def each_once_rate(
    endpoint: Endpoint, model: str, batches: EncodedBatches, concurrency: int, keep: bool
) -> float:
    """Inferences per second of sending every batch once, answers kept or not."""
    kept: list = []

    def on_answer(index, outputs):
        kept.append((index, outputs))

    make = lambda: InferClient(  # noqa: E731
        endpoint, model, batches, on_answer=on_answer if keep else None
    )
    loop = EachOnce(make, concurrency, Clock())
    loop.run()
    records = loop.log.records()
    if loop.failure or any(not r.ok for r in records):
        raise SystemExit(f"requests failed: {loop.failure or loop.log.last_error()}")
    if keep and len(kept) != len(records):
        raise SystemExit(f"{len(kept)} answers kept of {len(records)}")
    span = max(r.t_recv for r in records) - min(r.t_send for r in records)
    return sum(r.batch_size for r in records) / span


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--event-scale", type=float, default=0.1)
    args = parser.parse_args()
    figures = Figures()
    export_onnx(ROOT / "model_repository")
    models = (MODEL_CALIBRATION, MODEL_DYNAMIC_BATCHING)
    config = ServerConfig(
        repository=ROOT / "model_repository" / "embedded",
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        models=models,
    )
    patches = [b.patches for b in event_batches(SMALL_BATCH_SETTING, 0, args.event_scale)]
    print(
        f"one event at scale {args.event_scale}: {len(patches)} requests, "
        f"{sum(map(len, patches)):,} patches; concurrency {args.concurrency}"
    )
    with EmbeddedServer(config).start() as server, EncodedBatches(patches) as batches:
        for protocol in ("grpc", "http"):
            url = server.grpc_url if protocol == "grpc" else server.http_url
            endpoint = Endpoint(url, protocol)
            for model in models:
                kept, plain = [], []
                for _ in range(args.trials):
                    kept.append(each_once_rate(endpoint, model, batches, args.concurrency, True))
                    plain.append(each_once_rate(endpoint, model, batches, args.concurrency, False))
                figures.ratio(f"{protocol} {model}: answers kept / not", kept, plain)
    figures.exit()


if __name__ == "__main__":
    main()
