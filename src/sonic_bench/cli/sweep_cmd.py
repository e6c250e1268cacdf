"""`sonic-bench sweep`: a perf_analyzer-grade sweep of concurrency (or request rate)."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sonic_bench.analysis.throughput import saturation
from sonic_bench.cli.common import int_list, print_table, progress
from sonic_bench.cli.metrics_options import (
    add_metrics_options,
    announce,
    metrics_for,
    record_metrics,
)
from sonic_bench.cli.serve_cmd import add_server_options, server_config, start_server
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.level import (
    Level,
    LevelHooks,
    LevelResult,
    MeasurementSettings,
    measure_level,
)
from sonic_bench.measure.records import append_requests
from sonic_bench.measure.reference import InProcessReference
from sonic_bench.measure.windows import StabilityRule, Verdict, WindowStats
from sonic_bench.metrics.recording import RunMetrics, server_series_row
from sonic_bench.model.emtrackmichel import model_bytes
from sonic_bench.model.repository import MODEL_CALIBRATION, model_for
from sonic_bench.results.machine import this_harness, this_machine
from sonic_bench.results.schema import (
    LoadInfo,
    Manifest,
    WorkloadInfo,
    make_run_id,
    served_model,
    utc_now,
)
from sonic_bench.results.store import RunWriter
from sonic_bench.triton.client import EncodedBatches, Endpoint, InferClient, check_server
from sonic_bench.triton.stats import StatsReader
from sonic_bench.workload.batching import parse_batch_setting
from sonic_bench.workload.event import DEFAULT_SEED
from sonic_bench.workload.pool import BatchPool, simulated_pool

DEFAULT_CONCURRENCY = [1, 2, 4, 8, 16, 32, 64]
MAX_CLIENTS = 400


def register(commands) -> None:
    parser = commands.add_parser("sweep", help="throughput and latency against load levels")
    add_server_options(parser)
    target = parser.add_argument_group("target")
    target.add_argument(
        "--url", help="a running Triton (host:port); default: start the embedded one"
    )
    target.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    target.add_argument("--ssl", action="store_true", help="TLS to a remote server")
    target.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="extra header (tokens)"
    )
    target.add_argument("--shared-memory", action="store_true", help="system shared memory (local)")
    target.add_argument("--model", help="model name (default: by --dynamic-batching)")
    target.add_argument("--calibration", action="store_true", help="the zero-compute model")
    target.add_argument("--dynamic-batching", choices=("on", "off", "both"), default="on")
    load = parser.add_argument_group("load")
    load.add_argument(
        "--batch", default="large", help="batch settings: small, large, N (comma list)"
    )
    load.add_argument(
        "--concurrency", type=int_list, help="levels, e.g. 1,2,4 or 1-64 (default 1-64)"
    )
    load.add_argument("--rate", type=_float_list, help="open loop: request rates per second")
    load.add_argument("--poisson", action="store_true", help="open loop: Poisson arrivals")
    load.add_argument("--max-in-flight", type=int, default=64, help="open loop: worker cap")
    measure = parser.add_argument_group("measurement")
    measure.add_argument("--window", type=float, default=5.0, help="seconds per window")
    measure.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    measure.add_argument("--max-windows", type=int, default=10)
    measure.add_argument("--stability", type=float, default=0.10, help="tolerance (0.10 = 10%%)")
    measure.add_argument("--repeat", type=int, default=1, help="trials of every level")
    measure.add_argument(
        "--reference",
        action="store_true",
        help="measure in-process onnxruntime before each level (for sonic-bench check)",
    )
    measure.add_argument("--reference-seconds", type=float, default=2.0)
    workload = parser.add_argument_group("workload")
    workload.add_argument("--seed", type=int, default=DEFAULT_SEED)
    workload.add_argument("--pool-batches", type=int, default=24, help="batches replayed")
    add_metrics_options(parser)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--label", default="sweep")
    parser.set_defaults(run=run)


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None


def _levels(args: argparse.Namespace) -> list[Level]:
    if args.rate:
        if any(r <= 0 for r in args.rate):
            raise SonicBenchError("--rate values must be positive requests per second")
        return [
            Level(rate=r, poisson=args.poisson, max_in_flight=args.max_in_flight) for r in args.rate
        ]
    levels = args.concurrency or DEFAULT_CONCURRENCY
    if args.repeat < 1:
        raise SonicBenchError("--repeat must be at least 1")
    if any(c < 1 or c > MAX_CLIENTS for c in levels):
        raise SonicBenchError(f"--concurrency levels must be between 1 and {MAX_CLIENTS}")
    return [Level(concurrency=c) for c in levels]


def _headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise SonicBenchError(f"--header {pair!r} is not NAME:VALUE")
        headers[name.strip()] = value.strip()
    return headers


@dataclass(frozen=True)
class Configuration:
    setting: int
    dynamic_batching: bool
    model: str

    @property
    def tag(self) -> str:
        return f"b{self.setting}-{'db' if self.dynamic_batching else 'nodb'}"


def _configurations(args) -> list[Configuration]:
    settings = [parse_batch_setting(s) for s in args.batch.split(",") if s]
    db = {"on": [True], "off": [False], "both": [True, False]}[args.dynamic_batching]
    configs = []
    for setting, on in itertools.product(settings, db):
        model = args.model or (MODEL_CALIBRATION if args.calibration else model_for(on))
        configs.append(Configuration(setting, on, model))
    return configs


def _iso(unix: float) -> str:
    return (
        dt.datetime.fromtimestamp(unix, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def run(args: argparse.Namespace) -> int:
    levels = _levels(args)
    configs = _configurations(args)
    with ExitStack() as stack:
        if args.url:
            endpoint = Endpoint(
                args.url, args.protocol, args.ssl, _headers(args.header), args.shared_memory
            )
            metrics_url = args.metrics_url or f"http://{args.url.rsplit(':', 1)[0]}:8002/metrics"
        else:
            server = stack.enter_context(start_server(server_config(args)))
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
            endpoint = Endpoint(url, args.protocol, shared_memory=args.shared_memory)
            metrics_url = server.metrics_url
        metrics = stack.enter_context(metrics_for(args, metrics_url))
        announce(metrics)
        pools: dict[int, BatchPool] = {}
        for config in configs:
            if config.setting not in pools:
                progress(f"simulating a ProtoDUNE-SP event for batch setting {config.setting} ...")
                pools[config.setting] = simulated_pool(config.setting, seed=args.seed)
            _sweep_one(args, endpoint, config, pools[config.setting], levels, metrics)
    return 0


def _manifest(
    args, endpoint: Endpoint, config: Configuration, pool, average, server_info, levels
) -> Manifest:
    return Manifest(
        run_id=make_run_id(f"{args.label}-{config.tag}"),
        kind="sweep",
        started_at=utc_now(),
        harness=this_harness(),
        server=served_model(endpoint.url, endpoint.protocol, config.model, server_info),
        workload=WorkloadInfo(
            seed=args.seed,
            batch_size_setting=config.setting,
            avg_batch_size=average,
            patches_per_event=round(pool.patches_per_event),
        ),
        load=LoadInfo(
            mode="open" if args.rate else "closed",
            levels=tuple(lv.rate if lv.rate is not None else lv.concurrency for lv in levels),
            step_seconds=args.window,
            shared_memory=endpoint.shared_memory,
        ),
        machine=this_machine(),
    )


def _show_window(level: Level, window: WindowStats, verdict: Verdict) -> None:
    progress(
        f"  {level.label}: {window.throughput:,.0f} inf/s, p99 {window.p99_ms:,.1f} ms, "
        f"{window.requests} requests [{verdict.value}]"
    )


def _sweep_one(
    args, endpoint: Endpoint, config: Configuration, pool: BatchPool, levels, metrics: RunMetrics
) -> None:
    server_info = check_server(endpoint, config.model)
    sent = pool.sample(args.pool_batches)
    batches = EncodedBatches(endpoint.protocol, [b.patches for b in sent], endpoint.shared_memory)
    average = sum(b.size for b in sent) / len(sent)
    settings = MeasurementSettings(
        window_s=args.window,
        warmup_s=args.warmup,
        max_windows=args.max_windows,
        rule=StabilityRule(tolerance=args.stability),
    )
    hooks = LevelHooks(on_window=[_show_window], on_warning=[lambda m: progress(f"warning: {m}")])
    stats = StatsReader(endpoint, config.model)
    reference = None
    if args.reference:
        progress("in-process reference: the model through onnxruntime, between levels")
        reference = InProcessReference(model_bytes(), batches.arrays, args.reference_seconds)
    results: list[LevelResult] = []
    progress(f"sweep {config.model}, batch ~{average:.0f} ({config.setting}), {endpoint.protocol}")
    manifest = _manifest(args, endpoint, config, pool, average, server_info, levels)
    with RunWriter(args.results, manifest) as writer:
        writer.update(metrics=metrics.info())
        started = time.time()
        try:
            plan = [(trial, level) for trial in range(args.repeat) for level in levels]
            for step, (trial, level) in enumerate(plan):
                row = {"trial": trial}
                if reference is not None:
                    row["reference_inferences_per_s"] = reference.measure()
                result = measure_level(
                    step,
                    level,
                    lambda: InferClient(endpoint, config.model, batches),
                    settings,
                    stats,
                    hooks,
                )
                row.update(result.as_row(_iso))
                row.update(server_series_row(metrics.level(config.model, *result.span)))
                writer.append_step(row)
                append_requests(writer.folder / "requests.csv.gz", step, list(result.records))
                for message in result.warnings:
                    writer.warn(message)
                results.append(result)
        finally:
            record_metrics(metrics, writer, started)
    _print_summary(config, results, writer.folder)


def _print_summary(config: Configuration, results: list[LevelResult], folder: Path) -> None:
    print(f"\n{config.model}, batch setting {config.setting}:")
    rows = []
    for r in results:
        lat = r.latency()
        server = r.server.as_row() if r.server else {}
        rows.append(
            (
                r.level.concurrency if r.level.rate is None else f"{r.level.rate:g}/s",
                r.inferences_per_s,
                lat.p50_ms,
                lat.p99_ms,
                server.get("server_queue_us", float("nan")) / 1000,
                server.get("server_compute_infer_us", float("nan")) / 1000,
                server.get("server_batch_avg", float("nan")),
                "yes" if r.verdict is Verdict.STABLE else "NO",
            )
        )
    print_table(
        ("load", "inf/s", "p50 ms", "p99 ms", "queue ms", "compute ms", "exec batch", "stable"),
        rows,
    )
    closed = [r for r in results if r.level.rate is None]
    sat = saturation([r.level.concurrency for r in closed], [r.inferences_per_s for r in closed])
    if sat:
        print(
            f"saturation: {sat.max_inferences_per_s:,.0f} inf/s "
            f"at concurrency {sat.at_concurrency:g}; "
            f"95% of it from concurrency {sat.knee_concurrency:g}"
        )
    print(f"results: {folder}")
