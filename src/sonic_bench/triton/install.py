"""Where the tritonserver from the nvidia-pytriton wheel lives, and its Python backend.

The wheel ships the server, the Python backend library and one backend stub per Python
version; Triton wants the stub inside the backend folder as `triton_python_backend_stub`.
We lay out such a folder of symlinks once, beside the virtualenv.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from sonic_bench.errors import SonicBenchError

STUB_NAME = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    root: Path  # .../site-packages/pytriton/tritonserver

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.root.parent.parent / "nvidia_pytriton.libs"

    @property
    def site_packages(self) -> Path:
        return self.root.parent.parent

    def stub(self, python_version: str) -> Path:
        return self.root / "python_backend_stubs" / python_version / STUB_NAME

    def environment(self) -> dict[str, str]:
        """The server's environment: the stub finds its libraries and our Python packages."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = _join_path(str(self.libs), env.get("LD_LIBRARY_PATH"))
        # The stub's embedded interpreter finds its environment through the first `python3`
        # on PATH (as pytriton does it): ours, so model.py imports numpy and onnxruntime.
        env["PATH"] = _join_path(str(Path(sys.executable).parent), env.get("PATH"))
        return env


def _join_path(first: str, rest: str | None) -> str:
    return first if not rest else f"{first}{os.pathsep}{rest}"


def find_install() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise SonicBenchError(
            "tritonserver is not installed (package nvidia-pytriton missing): run 'make setup'"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    install = TritonInstall(root)
    if not install.binary.exists():
        raise SonicBenchError(
            f"tritonserver binary not found at {install.binary}: run 'make setup'"
        )
    return install


def backend_directory(install: TritonInstall, where: Path | None = None) -> Path:
    """A Triton backend folder holding the Python backend with this Python's stub."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.stub(version)
    if not stub.exists():
        raise SonicBenchError(f"no Triton Python backend stub for Python {version} at {stub}")
    base = where or Path(sys.prefix) / "var" / "sonic-bench" / "backends"
    python_dir = base / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    source = install.root / "backends" / "python"
    links = {entry.name: entry for entry in source.iterdir() if entry.is_file()}
    links[STUB_NAME] = stub
    for name, target in links.items():
        link = python_dir / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return base
