"""Proof by evaluation (optimize/probe.py): the probes, the evaluation of a subgraph, the mask test."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from subgraphs import const, model

from bert14.optimize.probe import MASKED_BIAS_MAX, evaluate, is_key_padding_bias, probe_feeds, table_rows


def _mask_bias_graph(scale: float, extra_input: bool = False):
    """attention_mask (B, S) -> (1 - mask) * scale, as (B, 1, 1, S): the exporters' additive bias."""
    inputs = [helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "S"])]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "m"], ["inverted"]),
        helper.make_node("Mul", ["inverted", "scale"], ["flat"]),
        helper.make_node("Unsqueeze", ["flat", "axes"], ["bias"]),
    ]
    if extra_input:  # the bias also reads an input the probes do not know
        inputs.append(helper.make_tensor_value_info("past", TensorProto.FLOAT, ["B", "S"]))
        nodes[2] = helper.make_node("Mul", ["inverted", "past"], ["flat"])
    initializers = [
        const("one", np.array(1.0, dtype=np.float32)),
        const("scale", np.array(scale, dtype=np.float32)),
        const("axes", np.array([1, 2], dtype=np.int64)),
    ]
    outputs = [helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["B", 1, 1, "S"])]
    return model(nodes, inputs, outputs, initializers)


def test_a_key_padding_bias_is_proven_on_every_probe() -> None:
    graph = _mask_bias_graph(-10000.0)
    bias = next(v for node in graph.graph for v in node.outputs if v.name == "bias")
    feeds = probe_feeds()
    results = evaluate(graph, [bias], feeds)
    assert len(results) == len(feeds) == 2
    for values, feed in zip(results, feeds, strict=True):
        assert is_key_padding_bias(values[0], feed.attention_mask) is None


def test_a_bias_too_weak_to_mask_is_refused_with_the_reason() -> None:
    graph = _mask_bias_graph(-100.0)  # exp(-100) does not underflow the way ORT's -1e4 filter does
    bias = next(v for node in graph.graph for v in node.outputs if v.name == "bias")
    feed = probe_feeds()[0]
    (values,) = evaluate(graph, [bias], [feed])
    assert (
        is_key_padding_bias(values[0], feed.attention_mask)
        == f"bias is not <= {MASKED_BIAS_MAX:g} where the mask drops a key"
    )


def test_a_causal_bias_is_not_a_key_padding_bias() -> None:
    mask = np.ones((1, 3), dtype=np.int64)
    causal = np.triu(np.full((3, 3), -1e9, dtype=np.float32), k=1)[None, None]  # (1, 1, S, S)
    assert is_key_padding_bias(causal, mask) == "bias is not 0 where the mask keeps a key"


def test_a_subgraph_reading_an_unknown_input_cannot_be_proven() -> None:
    graph = _mask_bias_graph(-10000.0, extra_input=True)
    bias = next(v for node in graph.graph for v in node.outputs if v.name == "bias")
    with pytest.raises(ValueError, match=r"depends on graph inputs \['past'\]"):
        evaluate(graph, [bias], probe_feeds())


def test_probes_stay_inside_small_embedding_tables() -> None:
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "S"]),
        helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["B", "S"]),
    ]
    nodes = [
        helper.make_node("Gather", ["words", "input_ids"], ["w"]),
        helper.make_node("Gather", ["types", "token_type_ids"], ["t"]),
        helper.make_node("Add", ["w", "t"], ["e"]),
    ]
    tables = [const("words", np.zeros((40, 4), np.float32)), const("types", np.zeros((1, 4), np.float32))]
    outputs = [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["B", "S", 4])]
    graph = model(nodes, inputs, outputs, tables)
    assert table_rows(graph) == (40, 1)
    for feed in probe_feeds(graph):
        assert feed.input_ids.max() < 40 and feed.token_type_ids.max() == 0
    assert max(feed.token_type_ids.max() for feed in probe_feeds()) == 1, "the default probes use segment B"
