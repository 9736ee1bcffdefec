from __future__ import annotations

import numpy as np
import pytest

from bert14.head import (
    IDENTITY,
    SIGMOID,
    SOFTMAX,
    applied,
    disagreements,
    score_function,
    scores,
)


def test_score_function_follows_problem_type_and_the_pipelines_rule_when_unset() -> None:
    assert score_function("single_label_classification", 3) == SOFTMAX
    assert score_function("multi_label_classification", 3) == SIGMOID
    assert score_function("regression", 1) == IDENTITY
    assert score_function(None, 14) == SOFTMAX
    assert score_function(None, 1) == SIGMOID  # transformers' pipeline reads one unnamed output as a sigmoid


def test_scores_per_function() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [1000.0, -1000.0, 0.0]], dtype=np.float32)  # (2, 3)
    soft = scores(logits, SOFTMAX)
    assert np.allclose(soft.sum(-1), 1.0) and np.allclose(soft[0], np.exp([2, 0, -1]) / np.exp([2, 0, -1]).sum())
    sig = scores(logits, SIGMOID)
    assert np.isfinite(sig).all() and np.allclose(sig[0], 1 / (1 + np.exp(-logits[0].astype(np.float64))))
    assert sig[1].tolist() == [1.0, 0.0, 0.5]
    assert np.array_equal(scores(logits, IDENTITY), logits.astype(np.float64))
    with pytest.raises(ValueError, match="expected one of"):
        scores(logits, "tanh")


def test_applied_labels_per_function() -> None:
    probs = np.array([[0.2, 0.7, 0.6], [0.9, 0.05, 0.5]])  # (2, 3)
    assert applied(probs, SOFTMAX).tolist() == [[False, True, False], [True, False, False]]
    assert applied(probs, SIGMOID).tolist() == [[False, True, True], [True, False, True]]
    assert applied(probs, SIGMOID, threshold=0.65).tolist() == [[False, True, False], [True, False, False]]
    assert not applied(probs, IDENTITY).any()


def test_a_top_label_flip_is_a_near_tie_only_within_twice_the_tolerance() -> None:
    reference = np.array([[1.00, 0.99, -3.0], [1.0, 0.5, -3.0], [1.0, 0.0, 0.0]])  # (3, 3)
    candidate = np.array([[0.99, 1.00, -3.0], [0.7, 0.8, -3.0], [1.0, 0.0, 0.0]])
    flipped, near = disagreements(reference, candidate, SOFTMAX, atol=0.01)
    assert flipped.tolist() == [True, True, False]
    assert near.tolist() == [True, False, False]


def test_a_sigmoid_label_crossing_zero_counts_even_when_the_top_label_holds() -> None:
    reference = np.array([[3.0, 0.004, -2.0], [3.0, 0.5, -2.0], [3.0, 0.5, -2.0]])  # (3, 3)
    candidate = np.array([[3.0, -0.004, -2.0], [3.0, -0.1, -2.0], [3.0, 0.4, -2.0]])
    flipped, near = disagreements(reference, candidate, SIGMOID, atol=0.01)
    assert flipped.tolist() == [True, True, False]  # the softmax reading would see no difference at all
    assert near.tolist() == [True, False, False]
    assert not disagreements(reference, candidate, SOFTMAX, atol=0.01)[0].any()
