"""What a classifier's logits mean: the scores a caller sees and the decisions parity compares.

Hugging Face's BertForSequenceClassification has one head shape for three tasks, and its config
names the task in `problem_type`. The logits are read as transformers' text-classification
pipeline reads them, so a checkpoint gives the same answers here as there:

| problem_type                 | scores                   | labels that apply              |
| ---------------------------- | ------------------------ | ------------------------------ |
| single_label_classification  | softmax over the labels  | the top one                    |
| multi_label_classification   | a sigmoid per label      | every one with score >= 0.5    |
| regression                   | the raw outputs          | none (the values are the answer)|

Left unset, one output means a sigmoid (the pipeline's rule) and more mean a softmax. In every
case the reported `label` is the one with the highest score, as the pipeline reports it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bert14.errors import InputError

SOFTMAX = "softmax"
SIGMOID = "sigmoid"
IDENTITY = "identity"
FUNCTIONS = (SOFTMAX, SIGMOID, IDENTITY)
PROBLEM_TYPES = {
    "single_label_classification": SOFTMAX,
    "multi_label_classification": SIGMOID,
    "regression": IDENTITY,
}
# A sigmoid label applies from probability 0.5, i.e. logit 0; callers may choose another threshold.
DEFAULT_THRESHOLD = 0.5


def score_function(problem_type: str | None, num_labels: int) -> str:
    """The function for a config's problem_type (validated by the caller) and label count."""
    if problem_type is None:
        return SIGMOID if num_labels == 1 else SOFTMAX
    return PROBLEM_TYPES[problem_type]


def scores(logits: np.ndarray, function: str) -> np.ndarray:
    """(B, C) logits -> (B, C) float64 scores."""
    values = logits.astype(np.float64)
    if function == SOFTMAX:
        exp = np.exp(values - values.max(-1, keepdims=True))
        return exp / exp.sum(-1, keepdims=True)
    if function == SIGMOID:
        return 0.5 * (1.0 + np.tanh(0.5 * values))  # = 1 / (1 + exp(-x)), without overflow
    if function == IDENTITY:
        return values
    raise ValueError(f"score function: expected one of {FUNCTIONS}, got {function!r}")


def check_threshold(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < float(value) < 1.0:
        raise InputError(f"Classifier.load: expected a {what} between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def label_thresholds(labels: list[str], threshold: float, per_label: Mapping[str, float] | None) -> np.ndarray:
    """(C,) float64: where each sigmoid label starts to apply, `per_label` where it names the label,
    `threshold` for the rest; a name that is not a label, or a value outside (0, 1), is an InputError."""
    named = dict(per_label or {})
    unknown = sorted(set(named) - set(labels))
    if unknown:
        raise InputError(f"Classifier.load: label_thresholds names {unknown}, not labels of this model ({labels})")
    check_threshold("threshold", threshold)
    return np.array(
        [check_threshold(f"threshold for {label!r}", named.get(label, threshold)) for label in labels],
        dtype=np.float64,
    )


def parse_label_thresholds(items: list[str]) -> dict[str, float] | None:
    """["体育=0.7", ...] (the CLI's repeated --label-threshold) -> {"体育": 0.7, ...}; None for none."""
    out = {}
    for item in items:
        label, sep, value = item.rpartition("=")
        try:
            if not sep or not label:
                raise ValueError
            out[label] = float(value)
        except ValueError:
            raise InputError(f"--label-threshold: expected LABEL=SCORE, e.g. 体育=0.7, got {item!r}") from None
    return out or None


def applied(row_scores: np.ndarray, function: str, threshold: float | np.ndarray = DEFAULT_THRESHOLD) -> np.ndarray:
    """(B, C) scores -> (B, C) bool: the labels that apply to each row; `threshold` is one
    number or one per label, (C,), and counts for sigmoid heads only."""
    if function == SOFTMAX:
        return np.arange(row_scores.shape[-1]) == row_scores.argmax(-1)[:, None]
    if function == SIGMOID:
        return row_scores >= threshold
    return np.zeros(row_scores.shape, dtype=bool)


def disagreements(reference: np.ndarray, candidate: np.ndarray, function: str, atol: float) -> tuple[np.ndarray, ...]:
    """Rows where the candidate's answer differs from the reference's, and which of those are
    near ties, as two (B,) bool arrays.

    The answer is the top label, plus (sigmoid) the set of labels that apply at 0.5. Within a
    logit tolerance of atol each side may move by atol, so a different top label is a near tie
    when the reference's two logits involved are at most 2 * atol apart, and a label that applies
    on one side only is a near tie when its reference logit is within atol of the boundary, 0.
    """
    reference = reference.astype(np.float64)  # (B, C)
    candidate = candidate.astype(np.float64)  # (B, C)
    rows = np.arange(len(reference))
    ref_top, got_top = reference.argmax(-1), candidate.argmax(-1)  # (B,)
    top_flip = ref_top != got_top
    top_near = reference[rows, ref_top] - reference[rows, got_top] <= 2 * atol
    if function != SIGMOID:
        return top_flip, top_flip & top_near
    changed = (reference >= 0) != (candidate >= 0)  # (B, C)
    set_flip = changed.any(-1)
    set_near = ~(changed & (np.abs(reference) > atol)).any(-1)
    flipped = top_flip | set_flip
    return flipped, flipped & (~top_flip | top_near) & (~set_flip | set_near)
