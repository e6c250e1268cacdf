"""`sonic-bench predict`: the paper's latency model without measurements, for planning."""

from __future__ import annotations

import argparse
import json

import numpy as np

from sonic_bench.analysis.latency_model import ModelInputs, model_inputs
from sonic_bench.cli.common import int_list, print_table
from sonic_bench.workload.detector import PATCHES_PER_EVENT

PATCH_BYTES = 48 * 48 * 4


def register(commands) -> None:
    parser = commands.add_parser("predict", help="the paper's latency model (Eqs. 1-5)")
    parser.add_argument("--t-cpu", type=float, default=330.0, help="CPU-only event time (s)")
    parser.add_argument("--p", type=float, default=0.65, help="fraction accelerated")
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
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def inputs_from(args: argparse.Namespace) -> ModelInputs:
    return model_inputs(
        t_cpu=args.t_cpu,
        p=args.p,
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
    return 0
