"""EmbedLayerNormalization: BERT's embedding sum and its LayerNorm -> one com.microsoft op.

    input_ids ──────Gather(word_table)──┐
    token_type_ids ─Gather(type_table)──Add──┐
    positions ──────Gather(pos_table)────────Add── LayerNormalization(gamma, beta)
    (any association order of the two Adds)

Becomes:  EmbedLayerNormalization(Cast(input_ids, int32), Cast(token_type_ids, int32),
          word_table, pos_table, type_table, gamma, beta), domain com.microsoft, same epsilon.

The fused op takes positions 0..S-1 itself. The exporters compute the positions as a slice of a
stored `position_ids` buffer (or a Range); which one does not matter: the position indices are
evaluated on probe inputs of two lengths (probe.py) and must equal 0..S-1 in every row. A model
with other positions (offset, learned per-batch, left-shifted by padding) is refused, as is one
whose ids do not come straight from the graph inputs `input_ids` / `token_type_ids`, whose tables
are not constants, or whose LayerNorm is not over the last axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from bert14.optimize.graph import MS_DOMAIN, constant, graph_input, producer, replace_value
from bert14.optimize.passes import PassResult, Refusal
from bert14.optimize.probe import evaluate, probe_feeds

_ID_INPUTS = ("input_ids", "token_type_ids")


@dataclass
class EmbeddingMatch:
    layer_norm: ir.Node
    word: ir.Value  # table (V, hidden)
    position: ir.Value  # table (P, hidden)
    segment: ir.Value | None  # table (T, hidden)
    position_ids: ir.Value  # indices, proven 0..S-1


def _addends(value: ir.Value, depth: int = 0) -> list[ir.Value]:
    node = producer(value, "Add")
    if node is None or depth > 2:
        return [value]
    return _addends(node.inputs[0], depth + 1) + _addends(node.inputs[1], depth + 1)


def _graph_input_name(value: ir.Value) -> str | None:
    cast = producer(value, "Cast")
    value = cast.inputs[0] if cast is not None else value
    return value.name if value.is_graph_input() else None


def match(layer_norm: ir.Node) -> EmbeddingMatch:
    """The match, or a Refusal saying why this LayerNormalization is not an embedding LayerNorm."""
    axis = layer_norm.attributes.get("axis")
    if axis is not None and axis.as_int() != -1:
        raise Refusal(f"{layer_norm.name}: LayerNorm is not over the last axis")
    if constant(layer_norm.inputs[1]) is None or (
        len(layer_norm.inputs) > 2 and layer_norm.inputs[2] is not None and constant(layer_norm.inputs[2]) is None
    ):
        raise Refusal(f"{layer_norm.name}: gamma/beta are not constants")
    gathers = [producer(v, "Gather") for v in _addends(layer_norm.inputs[0])]
    if len(gathers) != 3 and len(gathers) != 2 or any(g is None for g in gathers):
        raise Refusal(f"{layer_norm.name}: input is not a sum of 2 or 3 embedding Gathers")
    tables: dict[str, ir.Value] = {}
    position_ids = None
    for gather in gathers:
        assert gather is not None
        table = gather.inputs[0]
        array = constant(table)
        if array is None or array.ndim != 2:
            raise Refusal(f"{gather.name}: embedding table is not a constant 2-D tensor")
        name = _graph_input_name(gather.inputs[1])
        if name in _ID_INPUTS and name not in tables:
            tables[name] = table
        elif position_ids is None:
            position_ids = gather.inputs[1]
        else:
            raise Refusal(f"{gather.name}: more than one Gather reads something other than input_ids/token_type_ids")
    if "input_ids" not in tables or position_ids is None:
        raise Refusal(f"{layer_norm.name}: no word embedding of input_ids plus position embedding")
    return EmbeddingMatch(
        layer_norm,
        tables["input_ids"],
        gathers_table(gathers, position_ids),
        tables.get("token_type_ids"),
        position_ids,
    )


def gathers_table(gathers: list[ir.Node | None], indices: ir.Value) -> ir.Value:
    return next(g.inputs[0] for g in gathers if g is not None and g.inputs[1] is indices)


def check_positions(model: ir.Model, m: EmbeddingMatch) -> None:
    """A Refusal unless the position ids are 0..S-1 in every row (evaluated on probe inputs)."""
    if constant(m.position_ids) is not None:
        raise Refusal(f"{m.position_ids.name}: positions are a constant, not 0..S-1 of each input")
    feeds = probe_feeds(model)
    try:
        results = evaluate(model, [m.position_ids], feeds)
    except Exception as exc:  # the indices may depend on something other than the inputs
        raise Refusal(f"{m.position_ids.name}: could not evaluate the position ids ({exc})") from None
    for feed, (positions,) in zip(feeds, results, strict=True):
        batch, sequence = feed.input_ids.shape
        expected = np.arange(sequence)
        try:
            full = np.broadcast_to(positions, (batch, sequence))
        except ValueError:
            raise Refusal(f"{m.position_ids.name}: positions of shape {positions.shape} are not (batch, S)") from None
        if not np.array_equal(full, np.broadcast_to(expected, (batch, sequence))):
            raise Refusal(f"{m.position_ids.name}: positions are not 0..S-1 in every row")


def _int32(model: ir.Model, name: str, anchor: ir.Node) -> ir.Value:
    source = graph_input(model, name)
    assert source is not None
    cast = ir.node("Cast", [source], {"to": ir.DataType.INT32}, name=f"{name}_int32")
    cast.outputs[0].name = f"{name}_int32"
    cast.outputs[0].type = ir.TensorType(ir.DataType.INT32)
    cast.outputs[0].shape = source.shape
    model.graph.insert_before(anchor, cast)
    return cast.outputs[0]


def rewrite(model: ir.Model, m: EmbeddingMatch) -> None:
    anchor = m.layer_norm
    ids = _int32(model, "input_ids", anchor)
    segments = _int32(model, "token_type_ids", anchor) if m.segment is not None else None
    epsilon = m.layer_norm.attributes.get("epsilon")
    beta = m.layer_norm.inputs[2] if len(m.layer_norm.inputs) > 2 else None
    node = ir.node(
        "EmbedLayerNormalization",
        [ids, segments, m.word, m.position, m.segment, m.layer_norm.inputs[1], beta],
        {"epsilon": epsilon.as_float() if epsilon is not None else 1e-5},
        domain=MS_DOMAIN,
        num_outputs=2,
        name="EmbedLayerNormalization",
    )
    model.graph.insert_before(anchor, node)
    old = m.layer_norm.outputs[0]
    replace_value(old, node.outputs[0])
    hidden = constant(m.word).shape[1]  # type: ignore[union-attr]
    node.outputs[0].shape = ir.Shape([*ids.shape, hidden]) if ids.shape is not None else old.shape  # (B, S, hidden)
    node.outputs[0].type = old.type
    node.outputs[1].name = "embedding_mask_index"


def fuse_embed_layer_norm(model: ir.Model) -> PassResult:
    """Fuse the (first) embedding LayerNorm; returns (count, reasons for refused candidates)."""
    if graph_input(model, "input_ids") is None:
        return PassResult(0, ("the graph has no input_ids input",))
    refused: list[str] = []
    for node in list(model.graph):
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        try:
            found = match(node)
            check_positions(model, found)
        except Refusal as why:
            refused.append(str(why))
            continue
        rewrite(model, found)
        return PassResult(1)
    return PassResult(0, tuple(refused))
