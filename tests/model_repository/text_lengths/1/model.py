"""Each string's length in bytes: a BYTES request answered with INT32."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
            lengths = np.vectorize(len, otypes=[np.int32])(text)
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("lengths", lengths)])
            )
        return responses
