"""What a run ran on and with: the metadata that makes a result reproducible, and the
differences between two runs that explain a change before anyone looks at the code."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import cpuinfo
import psutil

from sonic_bench import __version__
from sonic_bench.results.schema import Harness, Machine, Manifest

# Packages whose version decides the numbers (the client, the model runtime, the server).
PACKAGES = (
    "tritonclient",
    "onnxruntime",
    "numpy",
    "locust",
    "nvidia-pytriton",
    "grpcio",
    "protobuf",
)
# CPU features that decide onnxruntime's speed: a difference explains a "regression".
SPEED_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4", "vnni")


def _run(command: list[str], cwd: Path | None = None) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (subprocess.SubprocessError, OSError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def _cpu() -> tuple[str, tuple[str, ...]]:
    info = cpuinfo.get_cpu_info()  # ~1 s: once per process
    model = info.get("brand_raw") or platform.processor() or platform.machine()
    return model, tuple(sorted(info.get("flags", ())))


@functools.cache
def _gpus() -> tuple[tuple[str, ...], str | None]:
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    rows = [line.split(",") for line in (out or "").splitlines() if line.strip()]
    names = tuple(r[0].strip() for r in rows)
    driver = rows[0][1].strip() if rows and len(rows[0]) > 1 else None
    return names, driver


def this_machine() -> Machine:
    model, flags = _cpu()
    gpus, driver = _gpus()
    return Machine(
        hostname=socket.gethostname(),
        cpu_model=model,
        cores=os.cpu_count() or 1,
        memory_bytes=psutil.virtual_memory().total,
        gpus=gpus,
        gpu_driver=driver,
        cpu_flags=flags,
        os=platform.platform(),
    )


def _checkout() -> Path:
    return Path(__file__).resolve().parent


def git_sha() -> str | None:
    return _run(["git", "rev-parse", "HEAD"], cwd=_checkout()) or None


def git_dirty() -> bool | None:
    """Uncommitted changes to tracked files of the checkout (None outside a checkout)."""
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_checkout())
    return None if status is None else bool(status)


@functools.cache
def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def this_harness() -> Harness:
    return Harness(
        version=__version__,
        git_sha=git_sha(),
        pid=os.getpid(),
        git_dirty=git_dirty(),
        versions=dict(versions()),
    )


def speed_flags(machine: Machine) -> set[str]:
    return {f for f in machine.cpu_flags if f.startswith(SPEED_FLAG_PREFIXES)}


def differences(a: Manifest, b: Manifest) -> list[str]:
    """What differs between the set-ups of two runs, as 'what: A vs B' (empty: alike).
    Fields an older run did not record are not compared."""
    out = []

    def differ(what: str, x: object, y: object) -> None:
        if x not in (None, "", (), {}) and y not in (None, "", (), {}) and x != y:
            out.append(f"{what}: {x} vs {y}")

    differ("CPU", a.machine.cpu_model, b.machine.cpu_model)
    differ("cores", a.machine.cores, b.machine.cores)
    fa, fb = speed_flags(a.machine), speed_flags(b.machine)
    if fa and fb and fa != fb:
        only_a, only_b = sorted(fa - fb), sorted(fb - fa)
        out.append(
            f"CPU flags: only in the first {only_a or '-'}, only in the second {only_b or '-'}"
        )
    differ("GPUs", ", ".join(a.machine.gpus), ", ".join(b.machine.gpus))
    differ("GPU driver", a.machine.gpu_driver, b.machine.gpu_driver)
    differ("tritonserver", a.server.triton_version, b.server.triton_version)
    for package in sorted(set(a.harness.versions) & set(b.harness.versions)):
        differ(package, a.harness.versions[package], b.harness.versions[package])
    differ("git sha", a.harness.git_sha, b.harness.git_sha)
    if a.harness.git_dirty or b.harness.git_dirty:
        dirty = [n for n, m in (("first", a), ("second", b)) if m.harness.git_dirty]
        out.append(f"uncommitted changes in the checkout of the {' and '.join(dirty)} run")
    return out
