"""Install NVIDIA's perf_analyzer into a virtualenv, reproducibly, from PyPI wheels.

The `tritonclient==2.50.0` wheel is the last to ship the binary
(`tritonclient-2.50.0.data/data/bin/perf_analyzer`); it links `libcudart.so.12`, taken
from the `nvidia-cuda-runtime-cu12` wheel (no GPU is needed to load it), and Debian's
`libb64-0d`. Only the two files are taken: the project keeps its own tritonclient.

    python -m sonic_bench.perf_analyzer.install VENV
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sonic_bench.errors import SonicBenchError

TRITONCLIENT = "tritonclient==2.50.0"
CUDA_RUNTIME = "nvidia-cuda-runtime-cu12==12.9.79"
BINARY_MEMBER = "tritonclient-2.50.0.data/data/bin/perf_analyzer"
CUDART_MEMBER = "nvidia/cuda_runtime/lib/libcudart.so.12"
WRAPPER = """#!/bin/sh
# perf_analyzer from {wheel}, with the libraries it links (installed by make setup)
LD_LIBRARY_PATH="{lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" exec "{lib}/perf_analyzer" "$@"
"""


def _download(requirement: str, folder: Path) -> Path:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "-d",
            str(folder),
            "--only-binary",
            ":all:",
            requirement,
        ],
        capture_output=True,
        text=True,
    )
    wheels = sorted(folder.glob(requirement.split("==")[0].replace("-", "_") + "-*.whl"))
    if done.returncode != 0 or not wheels:
        raise SonicBenchError(f"could not download {requirement}: {done.stderr.strip()[-300:]}")
    return wheels[0]


def _extract(wheel: Path, member: str, target: Path) -> None:
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(member) as source,
        open(target, "wb") as out,
    ):
        shutil.copyfileobj(source, out)


def install(venv: Path) -> Path:
    """Put perf_analyzer and libcudart.so.12 in VENV/lib/perf_analyzer and a wrapper that
    sets the library path in VENV/bin/perf_analyzer; returns the wrapper."""
    lib = (venv / "lib" / "perf_analyzer").resolve()
    lib.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sonic-pa-") as tmp:
        wheel = _download(TRITONCLIENT, Path(tmp))
        _extract(wheel, BINARY_MEMBER, lib / "perf_analyzer")
        _extract(_download(CUDA_RUNTIME, Path(tmp)), CUDART_MEMBER, lib / "libcudart.so.12")
    (lib / "perf_analyzer").chmod(0o755)
    wrapper = venv / "bin" / "perf_analyzer"
    wrapper.write_text(WRAPPER.format(wheel=TRITONCLIENT, lib=lib))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sonic_bench.perf_analyzer.install")
    parser.add_argument("venv", type=Path, nargs="?", default=Path(sys.prefix))
    args = parser.parse_args(argv)
    try:
        wrapper = install(args.venv)
    except SonicBenchError as e:
        print(f"perf_analyzer install: error: {e}", file=sys.stderr)
        return 2
    print(f"installed {wrapper}")
    return 0 if os.access(wrapper, os.X_OK) else 1


if __name__ == "__main__":
    sys.exit(main())
