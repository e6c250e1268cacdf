"""`sonic-bench predict`: the paper's latency model, with the paper's inputs (or yours) or
with inputs measured by a sweep and a baseline (`--from RUN...`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from sonic_bench.analysis.analyze import PlannedJobs, predict_from_runs
from sonic_bench.analysis.latency_model import ModelInputs, model_inputs
from sonic_bench.analysis.prediction import CurvePrediction, Prediction
from sonic_bench.analysis.summary import prediction_json
from sonic_bench.cli.common import int_list, print_table, progress
from sonic_bench.errors import SonicBenchError
from sonic_bench.loadgen.options import REDUCED_EVENT_SCALE
from sonic_bench.model.repository import MODEL_DYNAMIC_BATCHING
from sonic_bench.workload.batching import parse_batch_setting
from sonic_bench.workload.detector import PATCHES_PER_EVENT

PATCH_BYTES = 48 * 48 * 4
PAPER_T_CPU = 330.0  # s, the CPU-only event time
PAPER_P = 0.65  # the fraction of it that the server takes over


def register(commands) -> None:
    parser = commands.add_parser("predict", help="the paper's latency model (Eqs. 1-5)")
    parser.add_argument("--t-cpu", type=float, help="CPU-only event time (s; paper: 330)")
    parser.add_argument("--p", type=float, help="fraction accelerated (paper: 0.65)")
    gpu = parser.add_mutually_exclusive_group()
    gpu.add_argument("--t-gpu", type=float, help="server seconds per event, per GPU")
    gpu.add_argument("--throughput", type=float, help="inferences/s per GPU (with --patches)")
    parser.add_argument(
        "--patches", type=float, default=PATCHES_PER_EVENT, help="patches per event"
    )
    parser.add_argument("--t-preprocess", type=float, default=7.0)
    transmit = parser.add_mutually_exclusive_group()
    transmit.add_argument("--t-transmit", type=float, help="seconds to send an event's inputs")
    transmit.add_argument("--link-gbps", type=float, help="link speed; bytes from --patches")
    travel = parser.add_mutually_exclusive_group()
    travel.add_argument("--t-travel", type=float, help="round trips' seconds per event")
    travel.add_argument("--requests", type=float, help="requests per event (with --rtt-ms)")
    parser.add_argument("--rtt-ms", type=float, default=12.0)
    parser.add_argument("--n-gpu", type=int, default=4)
    parser.add_argument("--n-cpu", type=int_list, default=[1, 50, 100, 200, 270, 300, 400])
    parser.add_argument(
        "--jobs", type=int, help="grid jobs to serve: how many servers (GPUs) they need"
    )
    parser.add_argument("--json", action="store_true")
    measured = parser.add_argument_group(
        "from measured runs",
        "--from takes the server's throughput and request latency from a sweep, the CPU "
        "module time from a baseline, and the jobs from the Locust settings below",
    )
    measured.add_argument(
        "--from", dest="from_runs", nargs="+", type=Path, metavar="RUN",
        help="run folders, or folders of runs (a sweep; a baseline for the speedups)",
    )  # fmt: skip
    measured.add_argument("--model", default=MODEL_DYNAMIC_BATCHING, help="model the jobs call")
    measured.add_argument("--batch-size", default="small", help="small, large or N (Locust's)")
    measured.add_argument("--protocol", choices=("http", "grpc"), default="http")
    measured.add_argument("--event-scale", type=float, default=REDUCED_EVENT_SCALE)
    measured.add_argument("--other-seconds", type=float, default=110.0, help="per full event")
    measured.add_argument("--preprocess-seconds", type=float, default=7.0, help="per full event")
    measured.add_argument(
        "--requests-per-event",
        type=int,
        default=1,
        help="requests per full event of a model not fed the ProtoDUNE-SP workload",
    )
    parser.set_defaults(run=run)


PAPER_ONLY = (
    "t_cpu",
    "p",
    "t_gpu",
    "throughput",
    "t_transmit",
    "link_gbps",
    "t_travel",
    "requests",
)


def inputs_from(args: argparse.Namespace) -> ModelInputs:
    return model_inputs(
        t_cpu=PAPER_T_CPU if args.t_cpu is None else args.t_cpu,
        p=PAPER_P if args.p is None else args.p,
        patches=args.patches,
        bytes_per_patch=PATCH_BYTES,
        t_gpu=args.t_gpu,
        throughput=args.throughput,
        t_preprocess=args.t_preprocess,
        t_transmit=args.t_transmit,
        link_gbps=args.link_gbps,
        t_travel=args.t_travel,
        requests=args.requests,
        rtt_ms=args.rtt_ms,
        n_gpu=args.n_gpu,
    )


def run(args: argparse.Namespace) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise SonicBenchError(f"--jobs {args.jobs}: give at least 1 job")
    if args.from_runs:
        return run_measured(args)
    m = inputs_from(args)
    n_cpu = np.array(args.n_cpu, dtype=float)
    result = {
        "inputs": {
            k: getattr(m, k)
            for k in ("t_cpu", "p", "t_gpu", "t_preprocess", "t_transmit", "t_travel", "n_gpu")
        },
        "t_latency_s": m.t_latency,
        "t_ideal_s": m.t_ideal,
        "cpu_per_gpu": m.cpu_per_gpu,
        "n_sat": m.n_sat,
        "module_cpu_only_s": m.module_cpu_only,
        "module_unsaturated_s": m.module_unsaturated,
        "module_speedup": m.module_speedup,
        "total_speedup": m.total_speedup,
        "curve": [
            {"n_cpu": int(n), "t_sonic_s": float(t), "module_s": float(mod)}
            for n, t, mod in zip(n_cpu, m.t_sonic(n_cpu), m.module_time(n_cpu), strict=True)
        ],
    }
    if args.jobs:
        result["jobs"] = args.jobs
        result["gpus_needed"] = math.ceil(args.jobs / m.cpu_per_gpu)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"t_latency {m.t_latency:.2f} s = preprocess {m.t_preprocess:g} + transmit "
        f"{m.t_transmit:.2f} + travel {m.t_travel:.2f}"
    )
    print(
        f"t_ideal {m.t_ideal:.1f} s (Eq. 2); saturation at {m.cpu_per_gpu:.1f} CPU processes "
        f"per GPU, N_sat {m.n_sat:.0f} on {m.n_gpu} GPUs (Eq. 3)"
    )
    print(
        f"module {m.module_cpu_only:.1f} s -> {m.module_unsaturated:.2f} s: "
        f"{m.module_speedup:.1f}x; event {m.t_cpu:.0f} s -> {m.t_ideal:.1f} s: "
        f"{m.total_speedup:.2f}x"
    )
    print_table(
        ("N_CPU", "t_SONIC s (Eq. 4)", "module s"),
        [(c["n_cpu"], c["t_sonic_s"], c["module_s"]) for c in result["curve"]],
    )
    if args.jobs:
        print(f"{args.jobs} jobs need {result['gpus_needed']} GPUs to stay below saturation")
    return 0


def run_measured(args: argparse.Namespace) -> int:
    given = [name for name in PAPER_ONLY if getattr(args, name) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise SonicBenchError(f"{flag} with --from: the inputs come from the runs; drop one")
    jobs = PlannedJobs(
        model=args.model,
        batch_setting=parse_batch_setting(args.batch_size),
        protocol=args.protocol,
        event_scale=args.event_scale,
        other_full_s=args.other_seconds,
        preprocess_full_s=args.preprocess_seconds,
        requests_per_event=args.requests_per_event,
    )
    prediction = predict_from_runs(args.from_runs, jobs)
    servers = prediction.servers_for(args.jobs) if args.jobs else None
    curve = prediction.curve(max(args.jobs or 0, CURVE_JOBS))
    if args.json:
        out = prediction_json(prediction, curve)
        if servers:
            out["jobs"] = args.jobs
            out["servers_needed"], out["servers_needed_cautious"] = servers
        print(json.dumps(out, indent=2))
    else:
        _print_measured(prediction, args.event_scale, args.jobs, servers)
        _print_curve(prediction, curve)
    for message in prediction.warnings:
        progress(f"warning: {message}")
    return 0


CURVE_JOBS = 400  # the paper's staircase goes this far
CURVE_SHOWN = (1, 2, 5, 10, 20, 50, 100, 200, 400)


def _print_curve(p: Prediction, curve: CurvePrediction | None) -> None:
    if curve is None:
        print(f"whole curve: {p.curve_problem()}")
        return
    knee = "not reached" if curve.knee is None else f"{curve.knee:.1f} jobs"
    print(
        f"queueing network (exact MVA, the sweep's rate at each concurrency): asymptotes "
        f"cross at {curve.n_star:.1f} jobs; the module time doubles at {knee}"
    )
    shown = [n for n in CURVE_SHOWN if n <= len(curve.central.jobs)]
    central, low, high = curve.at(shown)
    rows = [
        (n, c, f"[{lo:.3g}, {hi:.3g}]", e, a)
        for n, c, lo, hi, e, a in zip(
            shown, central, low, high, curve.central.event_s[np.array(shown) - 1],
            p.module_time(np.array(shown, dtype=float)), strict=True,
        )
    ]  # fmt: skip
    print_table(("jobs", "module s", "interval", "event s", "asymptotes module s"), rows)


def _print_measured(p: Prediction, scale: float, jobs: int | None, servers) -> None:
    c, plan, m = p.capacity, p.plan, p.model
    x, lat = c.inferences_per_s, c.request_latency_s
    plateau = ", ".join(f"{v:g}" for v in c.plateau)
    print(
        f"server (sweep {c.run_id}, {c.model}, batch ~{c.avg_batch:.0f}, {c.protocol}): "
        f"{x.value:,.0f} inf/s [{x.low:,.0f}, {x.high:,.0f}] at concurrency {plateau}; "
        f"one request alone {lat.value * 1000:.1f} ms [{lat.low * 1000:.1f}, "
        f"{lat.high * 1000:.1f}] (concurrency {c.latency_concurrency:g})"
    )
    print(
        f"job event (scale {scale:g}): {plan.requests:g} requests, {plan.patches:,.0f} "
        f"patches, other work {plan.other_s:.3g} s, preprocessing {plan.preprocess_s:.3g} s"
    )
    print(
        f"t_GPU {m.t_gpu:.3g} s per event; t_ideal {m.t_ideal:.3g} s (Eq. 2); "
        f"N_sat {p.n_sat.value:.1f} [{p.n_sat.low:.1f}, {p.n_sat.high:.1f}] jobs per server "
        "(Eq. 3)"
    )
    print(
        f"module time {p.flat_module_s:.3g} s below the knee; past it "
        f"+{p.slope_s_per_client:.3g} s per added job (Eq. 5)"
    )
    if p.cpu_module_s is not None:
        print(
            f"speedup: module {p.cpu_module_s:.3g} s on one CPU thread (baseline "
            f"{p.baseline_run}) -> {p.flat_module_s:.3g} s: {p.module_speedup:.2f}x; event "
            f"{p.cpu_event_s:.3g} s -> {m.t_ideal:.3g} s: {p.total_speedup:.2f}x"
        )
    if jobs and servers:
        print(f"{jobs} jobs need {servers[0]} servers ({servers[1]} at the low end of N_sat)")
