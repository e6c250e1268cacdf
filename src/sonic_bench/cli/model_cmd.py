"""`sonic-bench model`: write the EmTrackMichelId ONNX file and describe it."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from sonic_bench.cli.common import add_repository
from sonic_bench.model.emtrackmichel import (
    DEFAULT_SEED,
    INPUT_NAME,
    MICHEL_OUTPUT,
    TRACK_EM_OUTPUT,
    build_model,
    count_parameters,
)
from sonic_bench.model.repository import TORCH_MODELS, export_onnx, torch_copy


def register(commands) -> None:
    parser = commands.add_parser("model", help="the EmTrackMichelId model")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    export = verbs.add_parser(
        "export", help="write model.onnx into the model repository (or one file)"
    )
    add_repository(export)
    export.add_argument("--seed", type=int, default=DEFAULT_SEED, help="weight seed (%(default)s)")
    export.add_argument("--output", type=Path, help="write one ONNX file here instead")
    export.set_defaults(run=run_export)
    torch = verbs.add_parser(
        "torch-repository",
        help="a repository for the embedded server on a GPU: the exported weights run by "
        "torch (onnx2torch), FP32, FP16 and BF16, dynamic batching on and off",
    )
    add_repository(torch)
    torch.add_argument("--output", type=Path, required=True, help="the folder to write")
    torch.add_argument("--device", default="cuda", help="the torch device (cuda, cuda:1, cpu)")
    torch.add_argument(
        "--compute",
        choices=("torch", "onnx"),
        default="torch",
        help="onnx: onnxruntime on CPU instead, for a dry run where torch is not installed",
    )
    torch.set_defaults(run=run_torch_repository)
    info = verbs.add_parser("info", help="parameters, tensors and size of the model")
    info.add_argument("--seed", type=int, default=DEFAULT_SEED)
    info.set_defaults(run=run_info)


def run_export(args: argparse.Namespace) -> int:
    if args.output:
        data = build_model(args.seed).SerializeToString(deterministic=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(data)
        paths = [args.output]
    else:
        paths = export_onnx(args.repository, args.seed)
    digest = hashlib.sha256(paths[0].read_bytes()).hexdigest()[:16]
    for path in paths:
        print(f"ready {path}")  # built, or kept: built before from the same code
    print(f"EmTrackMichelId, seed {args.seed}, sha256 {digest}…")
    return 0


def run_torch_repository(args: argparse.Namespace) -> int:
    root = torch_copy(args.repository, args.output, args.device, args.compute)
    print(f"wrote {root} ({', '.join(TORCH_MODELS)}; compute {args.compute} on {args.device})")
    return 0


def run_info(args: argparse.Namespace) -> int:
    model = build_model(args.seed)
    print(f"parameters: {count_parameters(model):,}")
    print(f"input:  {INPUT_NAME} FP32 [N, 48, 48, 1] (NHWC: wire, drift bin, 1)")
    print(f"output: {TRACK_EM_OUTPUT} FP32 [N, 3] (track, em, none)")
    print(f"output: {MICHEL_OUTPUT} FP32 [N, 1] (Michel)")
    print(f"size:   {model.ByteSize() / 1e6:.1f} MB")
    return 0
