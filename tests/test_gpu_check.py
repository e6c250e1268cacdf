"""bench/gpu_check.sh, dry-run here as the GPU machine will run it, on the CPU and with
onnxruntime (no torch here): the repository for the GPU mode, one server for every sweep,
the FP32, reduced-precision (with their accuracy runs) and transport sweeps, the folders
packed into a few files that analyse like any other, and the server gone afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import psutil
from helpers import ROOT

from sonic_bench.cli import main


def test_the_gpu_script_dry_runs_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out), "--device", "cpu",
         "--compute", "onnx", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    log = (out / "gpu_check.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "report.md", "results.tar.gz"]
    with tarfile.open(out / "results.tar.gz") as packed:
        packed.extractall(tmp_path / "back", filter="data")
    folders = sorted((tmp_path / "back" / "results").iterdir())
    kinds = [json.loads((f / "manifest.json").read_text())["kind"] for f in folders]
    assert kinds.count("sweep") == 5 and kinds.count("accuracy") == 2, kinds
    assert main(["analyze", str(tmp_path / "back" / "results"), "--no-plots"]) == 0
    out_text = capsys.readouterr().out
    assert "cnn_emtrkmichel_torch_fp16" in out_text and "accuracy beside speed" in out_text
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "sonic-gpu-" in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers, [p.info["cmdline"] for p in leftovers]
