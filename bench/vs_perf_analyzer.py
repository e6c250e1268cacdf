"""The native engine side by side with NVIDIA's perf_analyzer (issue 13).

Same embedded server, same model, same realistic patches and levels, engines interleaved
level by level (native c1, perf_analyzer c1, native c2, ...) so the machine's noise falls
on both. Both send the same requests: every one of the average batch size
(`--uniform-batches`), since perf_analyzer cannot send the realistic mix (whose large
HTTP requests cross the 16 MiB where Triton's HTTP server slows down), and both replay
the same batches (with shared memory one: perf_analyzer reads only its first region, and
whether the server copies the input from its cache or from RAM shows in the figure). Per
transport, batch and concurrency: throughput ratio native / perf_analyzer (median of the
trials) and, at concurrency 1, the p50 latency ratio.

    .venv/bin/python bench/vs_perf_analyzer.py [--transports grpc,http,shm,grpc-shm]
        [--batches small,large] [--concurrency 1,2,4,8] [--trials 3] [--real-model]
        [--model NAME] [--busy-poll US]

Targets: throughput ratio >= 0.95 at every level on the calibration model, p50 at
concurrency 1 at most 10% above perf_analyzer's (shown signed: where perf_analyzer's own
client is the slower one the native p50 is lower); on a model with real compute
(EmTrackMichelId with --real-model, or any served model with --model, e.g. the jet
tagger with --model jet_tagger --batches 64, its random inputs) the engines agree
within 5%.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
from pathlib import Path

from common import Figures, embedded_server

from sonic_bench.measure.level import MeasurementSettings
from sonic_bench.metrics.recording import MetricsOptions
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.runs.sweep import SweepPlan, configurations, levels, run_sweep
from sonic_bench.runs.target import Target

SETTINGS = MeasurementSettings(window_s=2.0, warmup_s=1.0, max_windows=6)
TRANSPORTS = {
    "grpc": ("grpc", False),
    "http": ("http", False),
    "shm": ("http", True),  # system shared memory, requests over HTTP
    "grpc-shm": ("grpc", True),
}


def sweep(server, transport, model, setting, counts, engine, root: Path, busy_poll_us=0.0):
    protocol, shared_memory = TRANSPORTS[transport]
    url = server.grpc_url if protocol == "grpc" else server.http_url
    native = engine == "native"
    plan = SweepPlan(
        configurations([setting], "off", model=model),
        levels(counts),
        dataclasses.replace(SETTINGS, busy_poll_us=busy_poll_us if native else 0.0),
        pool_batches=8,
        results=root,
        label=f"{engine}-{transport}",
        engine=engine,  # type: ignore[arg-type]
        uniform_batches=True,
    )
    target = Target(url=url, protocol=protocol, shared_memory=shared_memory)
    (run,) = run_sweep(plan, target, MetricsOptions(mode="off"))
    return {r.level.concurrency: r.row for r in run.results}


def _median(trials: list[dict], concurrency: int, column: str = "latency_ms_p50") -> float:
    """Median over the trials that have the figure (an unstable perf_analyzer level has
    no percentiles): NaN when none has, which misses its target."""
    values = [t[concurrency].get(column, math.nan) for t in trials]
    finite = [v for v in values if isinstance(v, float | int) and math.isfinite(v) and v > 0]
    return statistics.median(finite) if finite else math.nan


def _judge(figures, name, native, reference, counts, real_model: bool) -> None:
    for c in counts:
        ours = [t[c].get("inferences_per_s", 0.0) for t in native]
        theirs = [t[c].get("inferences_per_s", 0.0) for t in reference]
        print(f"  {statistics.median(ours):,.0f} vs {statistics.median(theirs):,.0f} inf/s")
        if real_model:
            ratio = statistics.median(ours) / statistics.median(theirs)
            figures.value(f"{name} c{c} within 5%: |native / perf_analyzer - 1|",
                          abs(ratio - 1), 0.05, "{:.3f}", True)  # fmt: skip
        else:
            figures.ratio(f"{name} c{c}: native / perf_analyzer", ours, theirs, 0.95)
    # The harness must not add latency; lower than perf_analyzer's (its gRPC client
    # re-serializes a 15 MB request on every call) is shown, not held against it.
    ratio = _median(native, counts[0]) / _median(reference, counts[0])
    figures.value(
        f"{name} c{counts[0]}: p50 native / perf_analyzer - 1 (signed)",
        ratio - 1,
        0.10,
        "{:+.3f}",
        lower_is_better=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transports", default="grpc")
    parser.add_argument("--batches", default="large,small")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--real-model", action="store_true", help="EmTrackMichelId, not zero")
    parser.add_argument("--model", help="any served model with real compute (e.g. jet_tagger)")
    parser.add_argument("--busy-poll", type=float, default=0.0, help="the native engine's (us)")
    args = parser.parse_args()
    counts = [int(c) for c in args.concurrency.split(",")]
    model = args.model or (MODEL_NO_DYNAMIC_BATCHING if args.real_model else MODEL_CALIBRATION)
    real_compute = args.real_model or args.model is not None
    figures = Figures()
    with tempfile.TemporaryDirectory() as tmp, embedded_server() as server:
        for transport in args.transports.split(","):
            for batch in args.batches.split(","):
                setting = batch  # a ProtoDUNE-SP setting, or a size for any other model
                # Level by level, native then perf_analyzer, so that the machine's slow
                # phases (this shared machine has them, minutes long) fall on both.
                native: list[dict] = []
                reference: list[dict] = []
                for trial in range(args.trials):
                    root = Path(tmp) / f"{transport}-{batch}-{trial}"
                    ours_now, theirs_now = {}, {}
                    for c in counts:
                        ours_now |= sweep(
                            server, transport, model, setting, [c], "native", root, args.busy_poll
                        )
                        theirs_now |= sweep(
                            server, transport, model, setting, [c], "perf_analyzer", root
                        )
                    native.append(ours_now)
                    reference.append(theirs_now)
                _judge(figures, f"{transport} {model} batch {batch}", native, reference, counts,
                       real_compute)  # fmt: skip
    figures.exit()


if __name__ == "__main__":
    main()
