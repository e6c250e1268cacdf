"""`sonic-bench baseline`: CPU-only, in-process inference, as the paper's grid jobs did."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sonic_bench.cli.common import add_repository, int_list, print_table, progress
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.baseline import (
    DEFAULT_SESSION_BATCH,
    PATCHES_PER_EVENT,
    BaselineResult,
    open_session,
    time_inference,
)
from sonic_bench.measure.stats import summarize_latencies
from sonic_bench.model.emtrackmichel import DEFAULT_SEED as MODEL_SEED
from sonic_bench.model.emtrackmichel import model_bytes
from sonic_bench.results.machine import this_harness, this_machine
from sonic_bench.results.schema import (
    LoadInfo,
    Manifest,
    ServerInfo,
    WorkloadInfo,
    make_run_id,
    utc_now,
)
from sonic_bench.results.store import RunWriter
from sonic_bench.workload.batching import parse_batch_setting
from sonic_bench.workload.event import DEFAULT_SEED as WORKLOAD_SEED
from sonic_bench.workload.pool import BatchPool, simulated_pool


def register(commands) -> None:
    parser = commands.add_parser(
        "baseline", help="in-process onnxruntime throughput: the CPU-only reference"
    )
    add_repository(parser)
    parser.add_argument("--batch", default="small,large", help="batch settings (%(default)s)")
    parser.add_argument(
        "--threads", type=int_list, default=[1, 0], help="thread counts, 0 = all cores (1,0)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--session-batch", type=int, default=DEFAULT_SESSION_BATCH)
    parser.add_argument("--seed", type=int, default=WORKLOAD_SEED, help="workload seed")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--label", default="baseline")
    parser.set_defaults(run=run)


def _manifest(args, settings: list[int], pools: dict[int, BatchPool]) -> Manifest:
    threads = [t or os.cpu_count() or 1 for t in args.threads]
    first = pools[settings[0]]
    return Manifest(
        run_id=make_run_id(args.label),
        kind="baseline",
        started_at=utc_now(),
        harness=this_harness(),
        server=ServerInfo(
            url=None,
            protocol="in-process",
            triton_version=None,
            model="EmTrackMichelId (onnxruntime, CPU)",
            model_version="1",
            model_config={"session_batch": args.session_batch, "model_seed": MODEL_SEED},
        ),
        workload=WorkloadInfo(
            seed=args.seed,
            batch_size_setting=settings[0] if len(settings) == 1 else settings,
            avg_batch_size=first.avg_batch_size,
            patches_per_event=round(first.patches_per_event),
        ),
        load=LoadInfo(mode="in-process", levels=tuple(threads), step_seconds=args.duration),
        machine=this_machine(),
    )


def _row(step: int, result: BaselineResult, started: str) -> dict:
    return {
        "step": step,
        "concurrency": result.threads,
        "batch_size": result.batch_size,
        "started_at": started,
        "ended_at": utc_now(),
        "requests": result.batches,
        "errors": 0,
        "inferences_per_s": result.inferences_per_s,
        "requests_per_s": result.batches / result.wall_s,
        "stable": True,
        "client_cpu_percent": result.cpu_percent,
        **summarize_latencies(result.latencies_ms).as_row(),
    }


def run(args: argparse.Namespace) -> int:
    settings = [parse_batch_setting(s) for s in args.batch.split(",") if s]
    if not settings:
        raise SonicBenchError("--batch is empty: give small, large or a number")
    progress("simulating one full ProtoDUNE-SP event for the patches ...")
    pools = {s: simulated_pool(s, seed=args.seed) for s in settings}
    model = model_bytes()
    results: list[BaselineResult] = []
    with RunWriter(args.results, _manifest(args, settings, pools)) as writer:
        for threads in args.threads:
            session = open_session(model, threads)
            n_threads = threads or os.cpu_count() or 1
            for setting in settings:
                batches = [b.patches for b in pools[setting].batches]
                started = utc_now()
                progress(f"threads {n_threads}, batch setting {setting}: {args.duration:.0f} s ...")
                result = time_inference(
                    session, batches, n_threads, args.duration, args.session_batch
                )
                writer.append_step(_row(len(results), result, started))
                results.append(result)
    print_table(
        (
            "threads",
            "batch",
            "inf/s",
            "p50 ms",
            "p99 ms",
            "cpu %",
            f"s/{PATCHES_PER_EVENT} patches",
        ),
        [
            (
                r.threads,
                r.batch_size,
                r.inferences_per_s,
                summarize_latencies(r.latencies_ms).p50_ms,
                summarize_latencies(r.latencies_ms).p99_ms,
                r.cpu_percent,
                r.seconds_per_event,
            )
            for r in results
        ],
    )
    print(f"results: {writer.folder}")
    return 0
