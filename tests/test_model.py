import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import REPOSITORY

from sonic_bench.model import (
    INPUT_NAME,
    MICHEL_OUTPUT,
    TRACK_EM_OUTPUT,
    build_model,
    count_parameters,
    model_bytes,
    repository,
)
from sonic_bench.model.emtrackmichel import DEFAULT_SEED, EXPECTED_PARAMETERS
from sonic_bench.model.repository import (
    CONFIG_FILE,
    EMTRACKMICHEL,
    MODEL_JET_TAGGER,
    MODEL_NO_DYNAMIC_BATCHING,
    ONNX_FILE,
    build_record,
    export_onnx,
    network_bytes,
)


@pytest.fixture(scope="module")
def model():
    return build_model()


def test_parameter_count_matches_the_paper(model):
    assert count_parameters(model) == EXPECTED_PARAMETERS == 11_900_420


def test_tensor_names_and_shapes(model):
    graph = model.graph
    (given,) = graph.input
    assert given.name == INPUT_NAME
    dims = [d.dim_value or d.dim_param for d in given.type.tensor_type.shape.dim]
    assert dims == ["N", 48, 48, 1]
    outputs = {
        o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
        for o in graph.output
    }
    assert outputs == {TRACK_EM_OUTPUT: ["N", 3], MICHEL_OUTPUT: ["N", 1]}


def test_layers_are_the_papers(model):
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 1 and ops.count("Gemm") == 4
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert shapes["conv_w"] == (48, 1, 5, 5)
    assert shapes["dense1_w"] == (92_928, 128)
    assert shapes["dense2_w"] == (128, 32)


def test_weights_are_byte_identical_for_a_seed_and_differ_across_seeds():
    same = {hashlib.sha256(model_bytes(7)).hexdigest() for _ in range(2)}
    assert len(same) == 1
    assert hashlib.sha256(model_bytes(8)).hexdigest() not in same


def test_outputs_are_a_softmax_and_a_sigmoid(model, patches):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    softmax, sigmoid = session.run([TRACK_EM_OUTPUT, MICHEL_OUTPUT], {INPUT_NAME: patches})
    assert softmax.shape == (len(patches), 3) and sigmoid.shape == (len(patches), 1)
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, atol=1e-5)
    assert (softmax >= 0).all()
    assert ((sigmoid > 0) & (sigmoid < 1)).all()
    # Seeded weights still separate inputs: not a constant function.
    assert softmax.std(axis=0).max() > 1e-3


def _repository_of(root: Path, *models: str) -> list[Path]:
    """A repository of copies of `models`' configs; their model.onnx paths."""
    paths = []
    for model in models:
        folder = root / "embedded" / model
        (folder / "1").mkdir(parents=True)
        shutil.copyfile(REPOSITORY / "embedded" / model / CONFIG_FILE, folder / CONFIG_FILE)
        paths.append(folder / "1" / ONNX_FILE)
    return paths


def _no_build(*_):
    raise AssertionError("built again")


def test_export_keeps_what_it_built_and_builds_again_what_changed(tmp_path, monkeypatch):
    """A second export builds nothing; a file changed since, or one recorded from other
    code, is built again, to the same bytes."""
    (onnx_path,) = _repository_of(tmp_path, MODEL_JET_TAGGER)
    assert export_onnx(tmp_path) == [onnx_path]
    built = onnx_path.read_bytes()
    assert built == network_bytes(MODEL_JET_TAGGER)
    with monkeypatch.context() as patched:
        patched.setattr(repository, "network_bytes", _no_build)
        assert export_onnx(tmp_path) == [onnx_path]
    onnx_path.write_bytes(built[:-1])
    export_onnx(tmp_path)
    assert onnx_path.read_bytes() == built
    record = build_record(onnx_path)
    record.write_text(record.read_text().replace('"key": "', '"key": "other code '))
    with monkeypatch.context() as patched:
        patched.setattr(repository, "network_bytes", _no_build)
        with pytest.raises(AssertionError, match="built again"):
            export_onnx(tmp_path)


def test_export_builds_again_for_another_weight_seed_only(tmp_path, monkeypatch):
    """The default seed given or left out is one build; another seed is another, and it
    is EmTrackMichelId's: the jet tagger keeps its own weights."""
    _repository_of(tmp_path, MODEL_NO_DYNAMIC_BATCHING, MODEL_JET_TAGGER)
    export_onnx(tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(repository, "network_bytes", _no_build)
        export_onnx(tmp_path, seed=DEFAULT_SEED)
    built = []

    def building(network: str, precision: str, seed: int | None = None) -> bytes:
        built.append(network)
        return network_bytes(network, precision, seed)

    with monkeypatch.context() as patched:
        patched.setattr(repository, "network_bytes", building)
        export_onnx(tmp_path, seed=DEFAULT_SEED + 1)
    assert built == [EMTRACKMICHEL]
