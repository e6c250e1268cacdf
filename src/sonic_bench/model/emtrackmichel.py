"""The EmTrackMichelId network as an ONNX graph, built without any training framework.

Architecture (paper Fig. 1, larrecodnn): Conv2D 48 x 5x5 valid + ReLU -> flatten
(44*44*48 = 92,928) -> Dense 128 ReLU -> Dense 32 ReLU -> two heads, Dense 3 softmax
(track, em, none) and Dense 1 sigmoid (Michel). Dropout exists only in training.

No trained weights are public, so weights come from a fixed seed. Inference speed does
not depend on their values; the heads still give a valid softmax and sigmoid.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sonic_bench.model.signature import ModelSignature, TensorSpec

# Tensor names of LArSoft's Triton config for this model: a LArSoft client works unchanged.
INPUT_NAME = "main_input"
TRACK_EM_OUTPUT = "em_trk_none_netout/Softmax"
MICHEL_OUTPUT = "michel_netout/Sigmoid"
PATCH_SHAPE = (48, 48, 1)  # H = wire, W = drift bin, C = 1 (NHWC)

CONV_FILTERS = 48
CONV_KERNEL = 5
CONV_OUT = PATCH_SHAPE[0] - CONV_KERNEL + 1  # 44
FLAT_SIZE = CONV_OUT * CONV_OUT * CONV_FILTERS  # 92,928
DENSE_SIZES = (128, 32)
EXPECTED_PARAMETERS = 11_900_420
DEFAULT_SEED = 20210325  # the day the paper's preprint appeared
OPSET = 17

# The tensors of LArSoft's config (the three EmTrackMichelId models of the repository).
SIGNATURE = ModelSignature(
    inputs=(TensorSpec(INPUT_NAME, "FP32", PATCH_SHAPE),),
    outputs=(TensorSpec(TRACK_EM_OUTPUT, "FP32", (3,)), TensorSpec(MICHEL_OUTPUT, "FP32", (1,))),
    max_batch_size=65536,
    dynamic_batching=True,
)


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...]):
    """Keras' default initialiser, so activations stay in a realistic range."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = CONV_KERNEL
    w: dict[str, np.ndarray] = {
        # ONNX Conv weights are [out_channels, in_channels, kH, kW].
        "conv_w": _glorot(rng, k * k, k * k * CONV_FILTERS, (CONV_FILTERS, 1, k, k)),
        "conv_b": rng.normal(0.0, 0.05, CONV_FILTERS).astype(np.float32),
    }
    sizes = (FLAT_SIZE, *DENSE_SIZES)
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w[f"dense{i + 1}_w"] = _glorot(rng, n_in, n_out, (n_in, n_out))
        w[f"dense{i + 1}_b"] = rng.normal(0.0, 0.05, n_out).astype(np.float32)
    w["trk_w"] = _glorot(rng, DENSE_SIZES[-1], 3, (DENSE_SIZES[-1], 3))
    w["trk_b"] = np.zeros(3, np.float32)
    w["michel_w"] = _glorot(rng, DENSE_SIZES[-1], 1, (DENSE_SIZES[-1], 1))
    w["michel_b"] = np.zeros(1, np.float32)
    return w


def _nodes() -> list[onnx.NodeProto]:
    n = helper.make_node
    return [
        # NHWC (the Keras/TensorFlow layout LArSoft sends) -> NCHW for ONNX Conv.
        n("Transpose", [INPUT_NAME], ["x_nchw"], perm=[0, 3, 1, 2]),
        n("Conv", ["x_nchw", "conv_w", "conv_b"], ["conv"], kernel_shape=[5, 5], strides=[1, 1]),
        n("Relu", ["conv"], ["conv_relu"]),
        # Flattening in NCHW order avoids a 630 MB transpose at batch 1693; it only permutes
        # the rows of dense1, which is immaterial for seeded weights.
        n("Flatten", ["conv_relu"], ["flat"], axis=1),
        n("Gemm", ["flat", "dense1_w", "dense1_b"], ["d1"]),
        n("Relu", ["d1"], ["d1_relu"]),
        n("Gemm", ["d1_relu", "dense2_w", "dense2_b"], ["d2"]),
        n("Relu", ["d2"], ["d2_relu"]),
        n("Gemm", ["d2_relu", "trk_w", "trk_b"], ["trk_logits"]),
        n("Softmax", ["trk_logits"], [TRACK_EM_OUTPUT], axis=-1),
        n("Gemm", ["d2_relu", "michel_w", "michel_b"], ["michel_logit"]),
        n("Sigmoid", ["michel_logit"], [MICHEL_OUTPUT]),
    ]


def build_model(seed: int = DEFAULT_SEED) -> onnx.ModelProto:
    """The EmTrackMichelId CNN with weights drawn from `seed` (same seed, same bytes)."""
    initializers = [numpy_helper.from_array(a, name) for name, a in _weights(seed).items()]
    graph = helper.make_graph(
        _nodes(),
        "EmTrackMichelId",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *PATCH_SHAPE])],
        outputs=[
            helper.make_tensor_value_info(TRACK_EM_OUTPUT, TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info(MICHEL_OUTPUT, TensorProto.FLOAT, ["N", 1]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="sonic-bench",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    model.ir_version = 8  # readable by the onnxruntime in Triton 2.51-era containers
    model.doc_string = f"EmTrackMichelId CNN, seeded weights (seed={seed}), not trained"
    onnx.checker.check_model(model)
    return model


def model_bytes(seed: int = DEFAULT_SEED) -> bytes:
    return build_model(seed).SerializeToString(deterministic=True)


def count_parameters(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)
