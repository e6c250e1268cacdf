"""The answers the served model must give: its FP32 network run in-process by onnxruntime
on the same inputs, and what the comparison knows of the model (its classifier outputs,
EmTrackMichelId's Michel cut)."""

from __future__ import annotations

from pathlib import Path

from sonic_bench.accuracy.drift import Judging, Outputs, ScoreCut
from sonic_bench.errors import SonicBenchError
from sonic_bench.measure.baseline import DEFAULT_SESSION_BATCH, infer, open_session
from sonic_bench.model.emtrackmichel import MICHEL_OUTPUT
from sonic_bench.model.repository import EMTRACKMICHEL, NETWORKS, network_of
from sonic_bench.model.signature import Batch

# LArSoft's Michel selection keeps hits whose Michel score is above one half.
MICHEL_THRESHOLD = 0.5


class ReferenceModel:
    """An ONNX network in this process; `outputs(batch)` by output name."""

    def __init__(self, model: Path | bytes, name: str, threads: int = 0):
        self.name = name
        try:
            self.session = open_session(model, threads)
        except Exception as e:  # onnxruntime's errors: a bad file, a graph it cannot run
            raise SonicBenchError(f"--reference {name}: onnxruntime cannot load it ({e})") from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def outputs(self, batch: Batch) -> Outputs:
        arrays = infer(self.session, batch, DEFAULT_SESSION_BATCH)
        return dict(zip(self.output_names, arrays, strict=True))


def reference_for(model: str, model_config: dict, path: Path | None) -> ReferenceModel:
    """The given ONNX file, else the FP32 network of sonic-bench's that the served model
    runs (a reduced-precision variant is compared with its FP32 original)."""
    if path is not None:
        if not path.is_file():
            raise SonicBenchError(f"--reference {path}: no such file (give an ONNX model)")
        return ReferenceModel(path, str(path))
    network = network_of(model_config)
    if network is None:
        raise SonicBenchError(
            f"{model} is not one of sonic-bench's networks ({', '.join(NETWORKS)}): give "
            "its FP32 ONNX with --reference PATH to compare the answers with"
        )
    return ReferenceModel(NETWORKS[network](), f"{network} FP32 (onnxruntime, in-process)")


def judging_for(model_config: dict, michel_threshold: float = MICHEL_THRESHOLD) -> Judging:
    """Labels where the config names a label file (Triton's classification outputs);
    the Michel cut for EmTrackMichelId."""
    labelled = tuple(o["name"] for o in model_config.get("output") or () if o.get("label_filename"))
    score = None
    if network_of(model_config) == EMTRACKMICHEL:
        score = ScoreCut(MICHEL_OUTPUT, michel_threshold)
    return Judging(labelled, score)
