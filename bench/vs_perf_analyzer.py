"""The native engine side by side with NVIDIA's perf_analyzer (issue 13).

Same embedded server, same model, same realistic patches and levels, engines side by
side level by level (native c1, perf_analyzer c1, then perf_analyzer c1, native c1: who
goes first alternates by trial), so the machine's noise falls on both; a level that did
not settle (stable) is measured again, up to twice, as perf_analyzer keeps measuring.
Both send the same requests: every one of the average batch size
(`--uniform-batches`), since perf_analyzer cannot send the realistic mix (whose large
HTTP requests cross the 16 MiB where Triton's HTTP server slows down), and both replay
the same batches (with shared memory one: perf_analyzer reads only its first region, and
whether the server copies the input from its cache or from RAM shows in the figure). Per
transport, batch and concurrency: throughput ratio native / perf_analyzer (the median
of the trials' own ratios, each native level over the perf_analyzer level beside it) and,
at concurrency 1, the p50 latency ratio.

    .venv/bin/python bench/vs_perf_analyzer.py [--transports grpc,http,shm,grpc-shm]
        [--batches small,large] [--concurrency 1,2,4,8] [--trials 3] [--real-model]
        [--model NAME] [--busy-poll US] [--server-cpus 0]

Targets: throughput ratio >= 0.95 at every level on the calibration model, p50 at
concurrency 1 at most 10% above perf_analyzer's (shown signed: where perf_analyzer's own
client is the slower one the native p50 is lower); on a model with real compute
(EmTrackMichelId with --real-model, or any served model with --model, e.g. the jet
tagger with --model jet_tagger --batches 64, its random inputs) the engines agree
within 5%. Where the server is the limit (in-band HTTP, shared memory) both engines drive
it to the same throughput and a paired trial's ratio spreads by ~10% on a shared VM, as
the host's own speed does (bench/host_noise.py): judge those cells over --trials 5 or
more (bench/README.md). Each cell prints its trials and a distribution-free interval for
their median: with 5 trials that is their whole range, and on a real model it is wider
than the 5% bound, so read the real-model figure over --trials 15. On a machine of a few
cores a CPU server's throughput is what the client leaves it (perf_analyzer's client
takes two to three times the native engine's CPU): --server-cpus puts the server on its
own CPUs and the engines on the rest, so the figure compares their measurements and not
their CPU cost. On a real model each cell where the server ran every request alone (at
concurrency 1 always) also prints how busy each engine kept the server (its own compute
statistics over the level): that ratio does not move with the host's speed, and where a
trial's throughput ratio spreads by 20% it spreads by 2%, so it tells which engine
leaves the server idle and by how much.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import statistics
import tempfile
from pathlib import Path

from common import Figures, embedded_server, interleaved, median_interval, trial_ratios

from sonic_bench.measure.level import MeasurementSettings
from sonic_bench.metrics.recording import MetricsOptions
from sonic_bench.model.repository import MODEL_CALIBRATION, MODEL_NO_DYNAMIC_BATCHING
from sonic_bench.runs import sweep as sweeps
from sonic_bench.runs.sweep import SweepPlan, configurations, levels, run_sweep
from sonic_bench.runs.target import Target

# Every level is a sweep of its own, and each would simulate the same seeded event again.
sweeps.simulated_pool = functools.cache(sweeps.simulated_pool)

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


# A level whose throughput did not settle (its windows kept moving) is measured again,
# up to this many times, as perf_analyzer itself keeps measuring.
RETRIES = 2


def level(server, transport, model, setting, c, engine, root: Path, busy_poll_us=0.0) -> dict:
    """One engine's row at concurrency `c`, measured again while its throughput did not
    settle within the windows (RETRIES at most). A tail percentile from too few answers
    leaves the level INVALID too, but not its throughput, which is what is compared."""
    for attempt in range(RETRIES + 1):
        row = sweep(server, transport, model, setting, [c], engine, root, busy_poll_us)[c]
        if row.get("stable"):
            return row
        if attempt < RETRIES:
            print(f"  {engine} {transport} batch {setting} c{c}: not stable, measured again")
    return row


def _finite(value) -> float:
    ok = isinstance(value, float | int) and math.isfinite(value) and value > 0
    return float(value) if ok else math.nan


def server_busy(row: dict) -> float:
    """The share of the level the server spent computing, from its own statistics:
    requests per second times the compute of one (input, infer, output). Unlike
    throughput it does not move with the host's speed, which slows compute and client
    alike; an engine that leaves the server idle between requests shows here. Only where
    every execution ran one request (at concurrency 1 always): where the server batched
    some requests together each of them carries its execution's whole time, and the sum
    overshoots (1.02 at concurrency 2 on the jet tagger, batch 512)."""
    batch, executed = _finite(row.get("batch_size")), _finite(row.get("server_batch_avg"))
    if not abs(executed - batch) < 0.5:
        return math.nan
    phases = ("server_compute_input_us", "server_compute_infer_us", "server_compute_output_us")
    compute_us = sum(_finite(row.get(p)) for p in phases)
    return _finite(row.get("inferences_per_s")) / batch * compute_us / 1e6


def _paired(ratios: list[float]) -> str:
    """The trials' own ratios and the distribution-free interval of their median."""
    low, high, coverage = median_interval(ratios)
    each = " ".join(f"{r:.3f}" for r in ratios)
    return f"trials {each}; the paired median lies in [{low:.3f}, {high:.3f}] ({coverage:.0%} sure)"


def _print_busy(name: str, native: list[dict], reference: list[dict], c: int) -> None:
    """How fully each engine kept the server busy, trial beside trial: on a shared VM a
    trial's throughput ratio spreads by 10-30% with the host, this one by a few percent."""
    busy = [(server_busy(a[c]), server_busy(b[c])) for a, b in zip(native, reference, strict=True)]
    busy = [(a, b) for a, b in busy if math.isfinite(a) and math.isfinite(b)]
    if not busy:
        return
    ours, theirs = [a for a, _ in busy], [b for _, b in busy]
    ratios = trial_ratios(ours, theirs)
    print(f"  {name} c{c} server busy {statistics.median(ours):.3f} vs "
          f"{statistics.median(theirs):.3f}"
          f" (medians); ratio {statistics.median(ratios):.3f}, {_paired(ratios)}")  # fmt: skip


def _judge(figures, name, native, reference, counts, real_model: bool) -> None:
    """Per level the median of the trials' own ratios, each trial's native level over
    the perf_analyzer level measured beside it."""
    for c in counts:
        ours = [t[c].get("inferences_per_s", 0.0) for t in native]
        theirs = [t[c].get("inferences_per_s", 0.0) for t in reference]
        ratios = trial_ratios(ours, theirs)
        # Each line names its cell: the figure's own line comes after them.
        print(f"  {name} c{c}: {statistics.median(ours):,.0f} vs "
              f"{statistics.median(theirs):,.0f} inf/s"
              f" (medians); {_paired(ratios)}")  # fmt: skip
        if real_model:
            _print_busy(name, native, reference, c)
            ratio = statistics.median(ratios)
            figures.value(f"{name} c{c} within 5%: |native / perf_analyzer - 1|",
                          abs(ratio - 1), 0.05, "{:.3f}", True)  # fmt: skip
        else:
            figures.ratio(f"{name} c{c}: native / perf_analyzer", ours, theirs, 0.95, paired=True)
    # The harness must not add latency; lower than perf_analyzer's (its gRPC client
    # re-serializes a 15 MB request on every call) is shown, not held against it. A trial
    # without both p50s (a level that never settled) has no ratio.
    first = counts[0]
    ratios = trial_ratios(
        [_finite(t[first].get("latency_ms_p50")) for t in native],
        [_finite(t[first].get("latency_ms_p50")) for t in reference],
    )
    finite = [r for r in ratios if math.isfinite(r)]
    figures.value(
        f"{name} c{first}: p50 native / perf_analyzer - 1 (signed)",
        statistics.median(finite) - 1 if finite else math.nan,
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
    parser.add_argument(
        "--server-cpus",
        help="CPUs for the server, e.g. 0 (the engines get the others): on a small machine "
        "a client's own CPU is otherwise taken from a real model's compute",
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.concurrency.split(",")]
    model = args.model or (MODEL_NO_DYNAMIC_BATCHING if args.real_model else MODEL_CALIBRATION)
    real_compute = args.real_model or args.model is not None
    figures = Figures()
    cpus = {int(c) for c in args.server_cpus.split(",")} if args.server_cpus else None
    every = os.sched_getaffinity(0)
    if cpus and not cpus < every:
        parser.error(f"--server-cpus {args.server_cpus}: give the server some of this "
                     f"machine's CPUs {sorted(every)} and leave at least one")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, embedded_server(cpus=cpus) as server:
        for transport in args.transports.split(","):
            for batch in args.batches.split(","):
                setting = batch  # a ProtoDUNE-SP setting, or a size for any other model
                # Level by level, native and perf_analyzer side by side (who goes first
                # alternates by trial), so that the machine's slow phases (this shared
                # machine has them, minutes long) fall on both.
                native: list[dict] = [{} for _ in range(args.trials)]
                reference: list[dict] = [{} for _ in range(args.trials)]
                for c in counts:
                    root = Path(tmp) / f"{transport}-{batch}-c{c}"
                    native_level = functools.partial(
                        level, server, transport, model, setting, c, "native", root,
                        args.busy_poll,
                    )  # fmt: skip
                    reference_level = functools.partial(
                        level, server, transport, model, setting, c, "perf_analyzer", root
                    )
                    ours, theirs = interleaved(args.trials, native_level, reference_level)
                    for trial in range(args.trials):
                        native[trial][c] = ours[trial]
                        reference[trial][c] = theirs[trial]
                _judge(figures, f"{transport} {model} batch {batch}", native, reference, counts,
                       real_compute)  # fmt: skip
    figures.exit()


if __name__ == "__main__":
    main()
