"""The EmTrackMichelId CNN: its ONNX definition and the Triton model repository."""

from sonic_bench.model.emtrackmichel import (
    INPUT_NAME,
    MICHEL_OUTPUT,
    PATCH_SHAPE,
    TRACK_EM_OUTPUT,
    build_model,
    count_parameters,
    model_bytes,
)

__all__ = [
    "INPUT_NAME",
    "MICHEL_OUTPUT",
    "PATCH_SHAPE",
    "TRACK_EM_OUTPUT",
    "build_model",
    "count_parameters",
    "model_bytes",
]
