"""Triton Python backend: logits -> label, score, probs, read as bert14's head means them.

    logits  FP32 [C]  ->  label BYTES [1], score FP32 [1], probs FP32 [C]

The score function (softmax, sigmoid or identity) and the labels come from bert14_head.json
beside this file, written from the artifact's manifest (bert14/head.py defines them).
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def scores(logits, function):
    values = logits.astype(np.float64)
    if function == "softmax":
        exp = np.exp(values - values.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)
    if function == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * values))
    return values


class TritonPythonModel:
    def initialize(self, args):
        head = json.loads((Path(__file__).parent / "bert14_head.json").read_text(encoding="utf-8"))
        self.labels = np.array([label.encode("utf-8") for label in head["labels"]], dtype=object)
        self.function = head["score_function"]

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()  # (N, C)
            probs = scores(logits, self.function)  # (N, C)
            top = probs.argmax(-1)  # (N,)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("label", self.labels[top].reshape(-1, 1)),
                pb_utils.Tensor("score", probs[np.arange(len(top)), top].astype(np.float32).reshape(-1, 1)),
                pb_utils.Tensor("probs", probs.astype(np.float32)),
            ]))  # fmt: skip
        return responses
