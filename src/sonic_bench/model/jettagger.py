"""A small jet-flavour tagger as an ONNX graph: the second model of the repository.

It stands for the models SuperSONIC's deployments serve beside EmTrackMichelId (CMS's
ParticleNet-style jet taggers) and is unlike it on purpose: three inputs of three
datatypes, an FP16 answer and an INT64 one. A Deep Sets network: each of up to 64 jet
constituents' 8 features through a shared MLP (8 -> 64 -> 64), a masked sum over the
constituents that are there (`pf_count`), joined with the jet's four-momentum, then
64 -> 5 classes (b, c, light quark, gluon, top).

    pf_features  FP16  [N, 64, 8]   constituents (zero-padded)
    pf_count     INT64 [N, 1]       how many constituents are real
    jet_p4       FP32  [N, 4]       pt, eta, phi, mass
 -> class_probs  FP16  [N, 5]       softmax over the classes
    top_class    INT64 [N, 1]       the most probable class

Weights are drawn from a seed, as for EmTrackMichelId: speed does not depend on them.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sonic_bench.model.signature import ModelSignature, TensorSpec

NAME = "jet_tagger"
CONSTITUENTS = 64
FEATURES = 8
HIDDEN = 64
CLASSES = 5
DEFAULT_SEED = 20240601
OPSET = 17

SIGNATURE = ModelSignature(
    inputs=(
        TensorSpec("pf_features", "FP16", (CONSTITUENTS, FEATURES)),
        TensorSpec("pf_count", "INT64", (1,)),
        TensorSpec("jet_p4", "FP32", (4,)),
    ),
    outputs=(
        TensorSpec("class_probs", "FP16", (CLASSES,)),
        TensorSpec("top_class", "INT64", (1,)),
    ),
    max_batch_size=1024,
    dynamic_batching=True,
)


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def dense(n_in: int, n_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (n_in + n_out))
        return rng.uniform(-limit, limit, (n_in, n_out)).astype(np.float32)

    return {
        "phi1_w": dense(FEATURES, HIDDEN),
        "phi1_b": np.zeros(HIDDEN, np.float32),
        "phi2_w": dense(HIDDEN, HIDDEN),
        "phi2_b": np.zeros(HIDDEN, np.float32),
        "rho1_w": dense(HIDDEN + 4, HIDDEN),
        "rho1_b": np.zeros(HIDDEN, np.float32),
        "rho2_w": dense(HIDDEN, CLASSES),
        "rho2_b": np.zeros(CLASSES, np.float32),
        "positions": np.arange(CONSTITUENTS, dtype=np.int64).reshape(1, CONSTITUENTS),
        "sum_axis": np.array([1], np.int64),
        "last_axis": np.array([-1], np.int64),
    }


def _nodes() -> list[onnx.NodeProto]:
    n = helper.make_node
    return [
        n("Cast", ["pf_features"], ["x"], to=TensorProto.FLOAT),
        # Constituent i is real when i < pf_count: a [N, 64, 1] mask of ones and zeros.
        n("Less", ["positions", "pf_count"], ["present"]),
        n("Cast", ["present"], ["present_f"], to=TensorProto.FLOAT),
        n("Unsqueeze", ["present_f", "last_axis"], ["mask"]),
        n("MatMul", ["x", "phi1_w"], ["h1_raw"]),
        n("Add", ["h1_raw", "phi1_b"], ["h1_lin"]),
        n("Relu", ["h1_lin"], ["h1"]),
        n("MatMul", ["h1", "phi2_w"], ["h2_raw"]),
        n("Add", ["h2_raw", "phi2_b"], ["h2_lin"]),
        n("Relu", ["h2_lin"], ["h2"]),
        n("Mul", ["h2", "mask"], ["h2_masked"]),
        n("ReduceSum", ["h2_masked", "sum_axis"], ["pooled"], keepdims=0),
        n("Concat", ["pooled", "jet_p4"], ["joined"], axis=1),
        n("Gemm", ["joined", "rho1_w", "rho1_b"], ["r1_lin"]),
        n("Relu", ["r1_lin"], ["r1"]),
        n("Gemm", ["r1", "rho2_w", "rho2_b"], ["logits"]),
        n("Softmax", ["logits"], ["probs"], axis=-1),
        n("Cast", ["probs"], ["class_probs"], to=TensorProto.FLOAT16),
        n("ArgMax", ["logits"], ["top_class"], axis=1, keepdims=1),
    ]


def build_model(seed: int = DEFAULT_SEED) -> onnx.ModelProto:
    initializers = [numpy_helper.from_array(a, name) for name, a in _weights(seed).items()]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        _nodes(),
        "JetTagger",
        inputs=[
            value("pf_features", TensorProto.FLOAT16, ["N", CONSTITUENTS, FEATURES]),
            value("pf_count", TensorProto.INT64, ["N", 1]),
            value("jet_p4", TensorProto.FLOAT, ["N", 4]),
        ],
        outputs=[
            value("class_probs", TensorProto.FLOAT16, ["N", CLASSES]),
            value("top_class", TensorProto.INT64, ["N", 1]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, producer_name="sonic-bench", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = 8
    model.doc_string = f"Deep Sets jet tagger, seeded weights (seed={seed}), not trained"
    onnx.checker.check_model(model)
    return model


def model_bytes(seed: int = DEFAULT_SEED) -> bytes:
    return build_model(seed).SerializeToString(deterministic=True)
