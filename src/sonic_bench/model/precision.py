"""Reduced-precision variants of a network, made from its FP32 ONNX by kept tools.

- fp16: onnxconverter-common's float16 conversion, inputs and outputs kept FP32 (the
  served model's tensors do not change; a LArSoft client works unchanged);
- int8-dynamic: onnxruntime's dynamic quantization (weights INT8, activations quantized
  per batch at run time);
- int8-static: onnxruntime's static quantization (QDQ, per-channel INT8 weights, UINT8
  activations) calibrated with MinMax on ProtoDUNE-SP patches from the seeded workload.

Each is deterministic for a given FP32 model and calibration set: the repository's
variants rebuild byte for byte.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

FP32 = "fp32"
PRECISIONS = (FP32, "fp16", "int8-dynamic", "int8-static")
CALIBRATION_PATCHES = 512  # enough for MinMax ranges to settle on this workload
CALIBRATION_BATCH = 64


def check_precision(precision: str, where: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"{where}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def convert(fp32: bytes, precision: str, calibration: np.ndarray | None = None) -> bytes:
    """The FP32 model's bytes in `precision`; `calibration`: the input samples the static
    quantization measures activation ranges on (its one input's)."""
    check_precision(precision, "convert")
    if precision == FP32:
        return fp32
    if precision == "fp16":
        return _fp16(fp32)
    with tempfile.TemporaryDirectory(prefix="sonic-quantize-") as folder, _quiet_root_logger():
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "out.onnx"
        source.write_bytes(fp32)
        if precision == "int8-dynamic":
            _int8_dynamic(source, target)
        else:
            if calibration is None:
                raise ValueError("int8-static needs calibration samples")
            _int8_static(source, target, calibration)
        return target.read_bytes()


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs a pre-processing hint through the root logger on
    every call: advice for image models, not a problem here, and not the user's to read."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _fp16(fp32: bytes) -> bytes:
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        # It says so for every weight below FP16's range that it rounds: expected here.
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load_from_string(fp32), keep_io_types=True)
    return model.SerializeToString()


def _int8_dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def _int8_static(source: Path, target: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = onnx.load(str(source), load_external_data=False).graph.input[0].name

    class Samples(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict] = iter(
                {name: calibration[i : i + CALIBRATION_BATCH]}
                for i in range(0, len(calibration), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quantize_static(
        str(source),
        str(target),
        Samples(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )


def protodune_calibration(seed: int | None = None) -> np.ndarray:
    """The static quantization's calibration set: the first patches of the seeded
    ProtoDUNE-SP workload (a twentieth of an event, small batches)."""
    from sonic_bench.workload.event import DEFAULT_SEED
    from sonic_bench.workload.pool import simulated_pool

    pool = simulated_pool(256, event_scale=0.05, seed=DEFAULT_SEED if seed is None else seed)
    return np.concatenate([b.patches for b in pool.batches])[:CALIBRATION_PATCHES]
