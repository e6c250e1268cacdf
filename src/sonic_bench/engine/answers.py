"""Whether an answer is the one asked for: every requested output, its datatype, its shape.

A server that answers 200 with a missing output, a wrong shape or a short tensor has not
served the request; the harness counts it as failed, with the reason. What is expected
depends only on the batch size, and answers that repeat byte for byte are judged once
(judging costs more than the rest of handling a small shared-memory answer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import service_pb2

from sonic_bench.model.signature import ModelSignature, tensor_from_bytes

# (name, datatype, shape with -1 where any size will do, bytes of data or None)
Output = tuple[str, str, tuple[int, ...], int | None]


class ExpectedOutputs:
    """The outputs of an answer to a request of `batch` samples. Hashable by identity
    (one per batch size, made once) so that caches keyed on it cost nothing to look up."""

    __slots__ = ("batch", "names", "outputs")

    def __init__(self, signature: ModelSignature, batch: int, with_data: bool):
        self.batch = batch
        outputs = []
        for spec in signature.outputs:
            shape = signature.shape(spec, batch)
            size = None
            if with_data and spec.item_bytes is not None and not spec.variable:
                size = spec.item_bytes * math.prod(shape)
            outputs.append((spec.name, spec.datatype, shape, size))
        self.outputs: tuple[Output, ...] = tuple(outputs)

    def problem(self, got: Sequence[Output]) -> str | None:
        """What is wrong with the outputs an answer holds; None when it is as asked."""
        by_name = {o[0]: o for o in got}
        for name, datatype, shape, size in self.outputs:
            answer = by_name.get(name)
            if answer is None:
                return f"the answer has no output {name!r}" + (
                    " (it has no output tensor)" if not got else ""
                )
            _, got_type, got_shape, got_size = answer
            if got_type != datatype:
                return f"output {name!r} is {got_type}, the model's metadata says {datatype}"
            if len(got_shape) != len(shape) or any(
                want >= 0 and have != want for have, want in zip(got_shape, shape, strict=False)
            ):
                return f"output {name!r} has shape {list(got_shape)}, expected {list(shape)}"
            if size is not None and got_size != size:
                return f"output {name!r} carries {got_size or 0} bytes, its shape needs {size}"
        return None


def expected_per_batch(
    signature: ModelSignature, sizes: Sequence[int], with_data: bool
) -> list[ExpectedOutputs]:
    """One ExpectedOutputs per batch, shared between batches of the same size."""
    made: dict[int, ExpectedOutputs] = {}
    return [made.setdefault(s, ExpectedOutputs(signature, s, with_data)) for s in sizes]


# An answer's outputs by name, as arrays (the accuracy mode's view of an answer).
Outputs = dict[str, np.ndarray]


def grpc_outputs(message: bytes) -> Outputs:
    """The outputs of a ModelInferResponse already judged as asked (`grpc_call._judge`)."""
    response = service_pb2.ModelInferResponse.FromString(message)
    return {
        o.name: tensor_from_bytes(data, o.datatype, o.shape)
        for o, data in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def http_outputs(body: bytes, header_size: int) -> Outputs:
    """The outputs of a KServe v2 answer already judged as asked (`http1.Answer.check`):
    its JSON header, then each output's binary data in the header's order."""
    header = json.loads(body[:header_size] or b"{}")
    outputs, at = {}, header_size
    for output in header.get("outputs") or ():
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            outputs[output["name"]] = np.asarray(output.get("data")).reshape(output["shape"])
            continue
        data = body[at : at + size]
        outputs[output["name"]] = tensor_from_bytes(data, output["datatype"], output["shape"])
        at += size
    return outputs
