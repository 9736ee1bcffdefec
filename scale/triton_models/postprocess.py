"""Triton Python backend: logits -> label, score, probs, labels, read as bert14's head means them.

    logits  FP32 [C]  ->  label BYTES [1], score FP32 [1], probs FP32 [C], labels BOOL [C]

labels[i, j]: label j applies to row i, as Prediction.labels says: the top label for a softmax
head, every label whose score reaches its threshold for a sigmoid head, none for regression.
The score function (softmax, sigmoid or identity), the labels and the thresholds come from
bert14_head.json beside this file, written from the artifact's manifest and triton-repo's
--threshold / --label-threshold (bert14/head.py defines them; this file runs without bert14).
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


def applied(probs, function, thresholds):
    if function == "softmax":
        return np.arange(probs.shape[-1]) == probs.argmax(-1)[:, None]
    if function == "sigmoid":
        return probs >= thresholds
    return np.zeros(probs.shape, dtype=bool)


class TritonPythonModel:
    def initialize(self, args):
        head = json.loads((Path(__file__).parent / "bert14_head.json").read_text(encoding="utf-8"))
        self.labels = np.array([label.encode("utf-8") for label in head["labels"]], dtype=object)
        self.function = head["score_function"]
        self.thresholds = np.array(head["thresholds"], dtype=np.float64)  # (C,)

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
                pb_utils.Tensor("labels", applied(probs, self.function, self.thresholds)),
            ]))  # fmt: skip
        return responses
