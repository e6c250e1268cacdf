"""The Triton model repository: which models it holds and writing their ONNX files.

`model_repository/embedded/` is served by the embedded tritonserver (Python backend
running onnxruntime on CPU); `model_repository/triton-gpu/` by the official Triton GPU
container (`onnxruntime_onnx`, KIND_GPU). Configs are committed; the 48 MB ONNX files
are generated, hard-linked so that the copies cost no disk.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from sonic_bench.errors import SonicBenchError
from sonic_bench.model import jettagger
from sonic_bench.model.emtrackmichel import DEFAULT_SEED, model_bytes
from sonic_bench.model.precision import FP32, PRECISIONS, convert, protodune_calibration

MODEL_DYNAMIC_BATCHING = "cnn_emtrkmichel_1"  # LArSoft's name for this model
MODEL_NO_DYNAMIC_BATCHING = "cnn_emtrkmichel_1_nodb"
MODEL_CALIBRATION = "emtrkmichel_zero"
MODEL_JET_TAGGER = jettagger.NAME
EMTRACKMICHEL = "emtrackmichel"
# What a model's `network` parameter names: its ONNX file, from a weight seed.
NETWORKS = {EMTRACKMICHEL: model_bytes, jettagger.NAME: jettagger.model_bytes}
DEFAULT_REPOSITORY = Path("model_repository")
EMBEDDED = "embedded"
ONNX_FILE = "model.onnx"

CONFIG_FILE = "config.pbtxt"


def read_config(path: Path) -> ModelConfig:
    """A model's config.pbtxt, parsed by protobuf's text format into Triton's own
    ModelConfig message: every spelling Triton accepts, and nothing else."""
    try:
        return text_format.Parse(path.read_text(), ModelConfig())
    except text_format.ParseError as e:
        raise SonicBenchError(f"{path}: not a valid Triton model config ({e})") from None


def write_config(path: Path, config: ModelConfig) -> None:
    path.write_text(text_format.MessageToString(config))


def parameter(config: ModelConfig, key: str) -> str | None:
    """A string parameter of the model (Triton's `parameters` map)."""
    return config.parameters[key].string_value if key in config.parameters else None


def embedded_repository(root: Path) -> Path:
    """The folder the embedded server serves: ROOT/embedded, or ROOT itself if it is one."""
    candidate = root / EMBEDDED
    if candidate.is_dir():
        return candidate
    if any(root.glob("*/config.pbtxt")):
        return root
    raise SonicBenchError(
        f"no model repository at {root}: run from the sonic-bench checkout or pass --repository"
    )


def slowed_copy(repository: Path, root: Path, slowdown: float) -> Path:
    """A repository under `root` holding a copy of the no-dynamic-batching model whose
    backend idles `slowdown` x its compute time: a known regression, to check that
    `sonic-bench check` catches one."""
    source = embedded_repository(repository) / MODEL_NO_DYNAMIC_BATCHING
    target = root / MODEL_NO_DYNAMIC_BATCHING
    (target / "1").mkdir(parents=True)
    (target / "1" / "model.py").write_text((source / "1" / "model.py").read_text())
    try:
        os.link(source / "1" / ONNX_FILE, target / "1" / ONNX_FILE)
    except OSError:
        shutil.copyfile(source / "1" / ONNX_FILE, target / "1" / ONNX_FILE)
    for output in read_config(source / CONFIG_FILE).output:
        if output.label_filename:  # Triton will not load the model without its labels
            shutil.copyfile(source / output.label_filename, target / output.label_filename)
    config = read_config(source / CONFIG_FILE)
    if parameter(config, "slowdown") is None:
        raise SonicBenchError(f"{source / CONFIG_FILE} has no slowdown parameter")
    config.parameters["slowdown"].string_value = f"{slowdown:g}"
    write_config(target / CONFIG_FILE, config)
    return root


# The GPU compute mode's repository: EmTrackMichelId with dynamic batching on and off in
# FP32, FP16 and BF16 variants, and the zero-compute model for the transport's cost.
TORCH_MODELS = {
    MODEL_DYNAMIC_BATCHING: (MODEL_DYNAMIC_BATCHING, "fp32"),
    MODEL_NO_DYNAMIC_BATCHING: (MODEL_NO_DYNAMIC_BATCHING, "fp32"),
    "cnn_emtrkmichel_torch_fp16": (MODEL_DYNAMIC_BATCHING, "fp16"),
    "cnn_emtrkmichel_torch_bf16": (MODEL_DYNAMIC_BATCHING, "bf16"),
    MODEL_CALIBRATION: (MODEL_CALIBRATION, "fp32"),
}


def torch_copy(repository: Path, root: Path, device: str, compute: str = "torch") -> Path:
    """A repository under `root` for the embedded server on a GPU: the same weights (the
    exported FP32 ONNX, hard-linked), run by torch on `device` (`compute`="torch") or by
    onnxruntime (`compute`="onnx": what a machine without torch can dry-run)."""
    if compute not in ("torch", "onnx"):
        raise SonicBenchError(f"--compute {compute}: use torch or onnx")
    source_root = embedded_repository(repository)
    for name, (source_name, dtype) in TORCH_MODELS.items():
        source, target = source_root / source_name, root / name
        (target / "1").mkdir(parents=True, exist_ok=True)
        (target / "1" / "model.py").write_text((source / "1" / "model.py").read_text())
        config = read_config(source / CONFIG_FILE)
        config.name = name
        for output in config.output:
            if output.label_filename:
                shutil.copyfile(source / output.label_filename, target / output.label_filename)
        if parameter(config, "compute") != "zeros":
            onnx = source / "1" / ONNX_FILE
            if not onnx.exists():
                raise SonicBenchError(f"{onnx} is missing: run 'sonic-bench model export' first")
            _link_or_copy(onnx, target / "1" / ONNX_FILE)
            config.parameters["compute"].string_value = compute
            config.parameters["device"].string_value = device
            config.parameters["torch_dtype"].string_value = dtype
        write_config(target / CONFIG_FILE, config)
    return root


def network_of(config: dict) -> str | None:
    """Which of sonic-bench's networks a served model runs, from its config (as the server
    gives it): its `network` parameter, else EmTrackMichelId for a model of its tensors
    (a LArSoft config, the GPU repository); None for any other."""
    parameters = config.get("parameters") or {}
    named = (parameters.get("network") or {}).get("string_value")
    if named:
        return named if named in NETWORKS else None
    if (parameters.get("compute") or {}).get("string_value") == "zeros":
        return EMTRACKMICHEL  # the calibration model: the network it stands in for
    inputs = config.get("input") or []
    if len(inputs) == 1 and inputs[0].get("name") == "main_input":
        return EMTRACKMICHEL
    return None


def model_for(dynamic_batching: bool) -> str:
    return MODEL_DYNAMIC_BATCHING if dynamic_batching else MODEL_NO_DYNAMIC_BATCHING


def models_needing_onnx(repository: Path) -> dict[tuple[str, str], list[Path]]:
    """Version-1 folders of every model whose config runs a network, by network and
    precision (the `precision` parameter: fp32 unless it names a variant)."""
    folders: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(repository.glob(f"*/*/{CONFIG_FILE}")):
        config = read_config(path)
        if parameter(config, "compute") == "zeros":
            continue
        network = parameter(config, "network") or EMTRACKMICHEL
        if network not in NETWORKS:
            raise SonicBenchError(
                f"{path}: network {network!r} is not one sonic-bench builds "
                f"({', '.join(NETWORKS)}); give the model its own model.onnx"
            )
        precision = parameter(config, "precision") or FP32
        if precision not in PRECISIONS:
            raise SonicBenchError(
                f"{path}: precision {precision!r} is not one sonic-bench builds "
                f"({', '.join(PRECISIONS)})"
            )
        folders.setdefault((network, precision), []).append(path.parent / "1")
    return folders


def network_bytes(network: str, precision: str = FP32, seed: int | None = None) -> bytes:
    """A network's ONNX in a precision: its FP32 graph from the seed, converted."""
    build = NETWORKS[network]
    fp32 = build(seed) if network == EMTRACKMICHEL and seed is not None else build()
    if precision == FP32:
        return fp32
    calibration = protodune_calibration() if precision == "int8-static" else None
    if calibration is not None and network != EMTRACKMICHEL:
        raise SonicBenchError(
            f"int8-static calibrates on ProtoDUNE-SP patches, which {network} does not take: "
            "use int8-dynamic or fp16"
        )
    return convert(fp32, precision, calibration)


def export_onnx(repository: Path, seed: int | None = None) -> list[Path]:
    """Write model.onnx into every model of `repository` that needs one (hard links
    between the copies of one network in one precision); returns the paths. `seed` is
    EmTrackMichelId's (the other networks keep their own). A file whose build record says
    it was built from the same code, libraries and seed, and that still holds the bytes
    then written, is kept: building every network takes ~11 s, and each test session,
    benchmark and GPU check starts here."""
    networks = models_needing_onnx(repository)
    if not networks:
        raise SonicBenchError(
            f"no model configs under {repository}/*/*/config.pbtxt: pass --repository "
            "pointing at sonic-bench's model_repository/"
        )
    written = []
    for (network, precision), folders in networks.items():
        first = folders[0] / ONNX_FILE
        key = build_key(network, precision, seed)
        if not _built_from(first, key):
            data = network_bytes(network, precision, seed)
            _write_if_changed(first, data)
            _record_build(first, key, data)
        written.append(first)
        for folder in folders[1:]:
            target = folder / ONNX_FILE
            _link_or_copy(first, target)
            written.append(target)
    return written


# What decides a network's ONNX bytes besides its name, precision and seed: the code that
# builds and converts it (the workload's too: int8-static calibrates on its patches) and
# the libraries that serialize and convert it.
BUILD_SOURCES = ("sonic_bench.model", "sonic_bench.workload")
BUILD_LIBRARIES = ("numpy", "onnx", "onnxruntime", "onnxconverter-common", "protobuf")
BUILD_RECORD_SUFFIX = ".build"


def build_key(network: str, precision: str, seed: int | None) -> str:
    """A digest of everything the bytes of `network` in `precision` are built from. The
    seed is EmTrackMichelId's (None: its default); the other networks keep their own."""
    weights = (DEFAULT_SEED if seed is None else seed) if network == EMTRACKMICHEL else None
    digest = hashlib.sha256(_code_and_libraries().encode())
    digest.update(json.dumps([network, precision, weights]).encode())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _code_and_libraries() -> str:
    digest = hashlib.sha256()
    for package in BUILD_SOURCES:
        folder = Path(importlib.import_module(package).__file__).parent
        for source in sorted(folder.glob("*.py")):
            digest.update(source.name.encode() + source.read_bytes())
    versions = {name: importlib.metadata.version(name) for name in BUILD_LIBRARIES}
    return digest.hexdigest() + json.dumps(versions, sort_keys=True)


def build_record(path: Path) -> Path:
    """The file beside a model.onnx that says what it was built from."""
    return path.with_name(path.name + BUILD_RECORD_SUFFIX)


def _record_build(path: Path, key: str, data: bytes) -> None:
    record = {"key": key, "sha256": hashlib.sha256(data).hexdigest()}
    build_record(path).write_text(json.dumps(record) + "\n")


def _built_from(path: Path, key: str) -> bool:
    """True when `path` holds the bytes its build record says were built from `key`: a
    file changed or replaced since, or one recorded from other code, is built again."""
    try:
        record = json.loads(build_record(path).read_text())
        if record.get("key") != key:
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == record.get("sha256")
    except (OSError, ValueError, AttributeError):
        return False


def _write_if_changed(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and os.path.samefile(source, target):
        return
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        _write_if_changed(target, source.read_bytes())
