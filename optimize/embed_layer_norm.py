"""EmbedLayerNormalization: the embedding sum and its LayerNorm -> one com.microsoft op.

    input_ids ──────Gather(word_table)──┐
    token_type_ids ─Gather(type_table)──Add──┐
    positions ──────Gather(pos_table)────────Add──(Add row)── LayerNormalization(gamma, beta)
    (any association order of the Adds)

Becomes:  EmbedLayerNormalization(Cast(input_ids, int32), Cast(token_type_ids, int32),
          word_table, pos_table', type_table, gamma, beta[, , Cast(positions, int32)]),
          domain com.microsoft, same epsilon.

What each family brings, all decided by evaluating the index subgraphs on probe inputs (probe.py),
never by the shape of the exporter's chain:
- BERT, DistilBERT, ELECTRA, ERNIE: positions are 0..S-1 in every row; the fused op takes them itself
  and the position subgraph goes.
- RoBERTa, XLM-R: positions count the row's non-pad tokens from padding_idx + 1 (pads get
  padding_idx). They are not 0..S-1, so the subgraph that computes them stays and feeds the op's
  optional position_ids input: exact for any padding, pads inside a row included.
- An addend that is the same row for every token (RoBERTa's token types read from an all-zero
  buffer, ERNIE's task type 0 when use_task_id is set and no task ids are given) is folded into the
  position table: pos_table' = pos_table + row. Proven by evaluating its indices on the probes and on
  ids spread over the whole vocabulary, pad ids inside rows included.

Refused: ids that do not come straight from the graph inputs, tables that are not constants, more
than one gather of something else than a constant row or the positions, position ids not of shape
(batch or 1, S), or a LayerNorm not over the last axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from bert14.optimize.graph import MS_DOMAIN, add_initializer, constant, graph_input, producer, replace_value
from bert14.optimize.passes import PassResult, Refusal
from bert14.optimize.probe import PROBE_WORD_IDS, ProbeFeed, evaluate, probe_feeds, table_rows

_ID_INPUTS = ("input_ids", "token_type_ids")


@dataclass
class EmbeddingMatch:
    layer_norm: ir.Node
    word: ir.Value  # table (V, hidden)
    position: ir.Value  # table (P, hidden)
    segment: ir.Value | None  # table (T, hidden)
    position_ids: ir.Value  # indices into `position`
    derived: list[ir.Node]  # Gathers whose indices are computed: the positions, and rows to prove constant
    constants: list[ir.Value]  # addends that are constant tensors (a row broadcast over tokens)
    implicit_positions: bool = True  # positions proven 0..S-1 (else fed as position_ids)
    rows: list[np.ndarray] | None = None  # the constant rows to fold into the position table


# Addends of the embedding sum: the Gathers of ids, positions and constant rows (ERNIE's four).
MAX_ADDENDS = 4


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
    addends = _addends(layer_norm.inputs[0])
    constants = [v for v in addends if constant(v) is not None]
    gathers = [producer(v, "Gather") for v in addends if constant(v) is None]
    if not 2 <= len(addends) <= MAX_ADDENDS or len(gathers) < 2 or any(g is None for g in gathers):
        raise Refusal(f"{layer_norm.name}: input is not a sum of 2 to {MAX_ADDENDS} embedding Gathers")
    tables: dict[str, ir.Value] = {}
    derived: list[ir.Node] = []
    for gather in gathers:
        assert gather is not None
        array = constant(gather.inputs[0])
        if array is None or array.ndim != 2:
            raise Refusal(f"{gather.name}: embedding table is not a constant 2-D tensor")
        name = _graph_input_name(gather.inputs[1])
        if name in _ID_INPUTS and name not in tables:
            tables[name] = gather.inputs[0]
        else:
            derived.append(gather)
    if "input_ids" not in tables or not derived:
        raise Refusal(f"{layer_norm.name}: no word embedding of input_ids plus position embedding")
    hidden = constant(tables["input_ids"]).shape[1]  # type: ignore[union-attr]
    for value in constants:
        array = constant(value)
        assert array is not None
        if array.shape[-1:] != (hidden,) or any(d != 1 for d in array.shape[:-1]):
            raise Refusal(f"{value.name}: a constant addend of shape {array.shape}, not one row of {hidden}")
    return EmbeddingMatch(
        layer_norm,
        tables["input_ids"],
        derived[0].inputs[0],
        tables.get("token_type_ids"),
        derived[0].inputs[1],
        derived,
        constants,
    )


def _spread(feeds: list[ProbeFeed], words: int | None) -> list[ProbeFeed]:
    """The probes again with ids spread over the whole word table, the low (pad-like) ids inside rows too."""
    top = max(words or PROBE_WORD_IDS, 2)
    spread = []
    for feed in feeds:
        index = np.arange(feed.input_ids.size, dtype=np.int64).reshape(feed.input_ids.shape)
        ids = (index * 7919 + 3) % top  # (B, S), 0 and 1 (pad ids) among them
        ids[:, 1::3] = index[:, 1::3] % 3
        spread.append(ProbeFeed(ids, feed.attention_mask, feed.token_type_ids))
    return spread


def check_positions(model: ir.Model, m: EmbeddingMatch) -> None:
    """Which derived Gather reads the positions, and proof that every other reads one constant row;
    a Refusal when the positions are not (batch or 1, S), or more than one Gather varies by token."""
    base = probe_feeds(model)
    feeds = base + _spread(base, table_rows(model)[0])
    indices = [gather.inputs[1] for gather in m.derived]
    if any(constant(value) is not None for value in indices):
        raise Refusal(f"{m.layer_norm.name}: an embedding Gather reads constant indices, not the inputs'")
    try:
        results = evaluate(model, indices, feeds)
    except Exception as exc:  # the indices may depend on something other than the inputs
        raise Refusal(f"{m.layer_norm.name}: could not evaluate the embedding indices ({exc})") from None
    varying, rows = [], []
    for k, gather in enumerate(m.derived):
        values = [result[k] for result in results]
        first = values[0].reshape(-1)[:1]
        if all(v.size and np.all(v == first) for v in values):
            rows.append(constant(gather.inputs[0])[int(first[0])])  # type: ignore[index]
        else:
            varying.append((gather, values))
    if len(varying) != 1:
        raise Refusal(f"{m.layer_norm.name}: expected one Gather of positions, found {len(varying)} "
                      "Gathers whose indices vary by token")  # fmt: skip
    gather, values = varying[0]
    m.position, m.position_ids = gather.inputs[0], gather.inputs[1]
    m.rows = rows + [constant(value).reshape(-1) for value in m.constants]  # type: ignore[union-attr]
    m.implicit_positions = True
    for feed, positions in zip(feeds, values, strict=True):
        batch, sequence = feed.input_ids.shape
        if positions.ndim != 2 or positions.shape[1] != sequence or positions.shape[0] not in (1, batch):
            raise Refusal(f"{m.position_ids.name}: positions of shape {positions.shape} are not (batch or 1, S)")
        if not np.array_equal(np.broadcast_to(positions, (batch, sequence)), np.tile(np.arange(sequence), (batch, 1))):
            m.implicit_positions = False  # fed to the op as position_ids
    rows_in_table = constant(m.position).shape[0]  # type: ignore[union-attr]
    if any(int(v.min()) < 0 or int(v.max()) >= rows_in_table for v in values):
        raise Refusal(f"{m.position_ids.name}: positions outside the table's {rows_in_table} rows on the probes")


def _int32(model: ir.Model, name: str, anchor: ir.Node) -> ir.Value:
    source = graph_input(model, name)
    assert source is not None
    return _as_int32(model, source, anchor)


def _as_int32(model: ir.Model, value: ir.Value, anchor: ir.Node) -> ir.Value:
    cast = ir.node("Cast", [value], {"to": ir.DataType.INT32}, name=f"{value.name}_int32")
    cast.outputs[0].name = f"{value.name}_int32"
    cast.outputs[0].type = ir.TensorType(ir.DataType.INT32)
    cast.outputs[0].shape = value.shape
    model.graph.insert_before(anchor, cast)
    return cast.outputs[0]


def rewrite(model: ir.Model, m: EmbeddingMatch) -> None:
    anchor = m.layer_norm
    ids = _int32(model, "input_ids", anchor)
    segments = _int32(model, "token_type_ids", anchor) if m.segment is not None else None
    epsilon = m.layer_norm.attributes.get("epsilon")
    beta = m.layer_norm.inputs[2] if len(m.layer_norm.inputs) > 2 else None
    position = m.position
    if m.rows:
        table = constant(m.position)
        assert table is not None
        folded = (table + np.sum(m.rows, axis=0)).astype(table.dtype)  # (P, hidden)
        position = add_initializer(model, f"{m.position.name}.with_constant_rows", folded)
    inputs = [ids, segments, m.word, position, m.segment, m.layer_norm.inputs[1], beta]
    if not m.implicit_positions:
        inputs += [None, _as_int32(model, m.position_ids, anchor)]  # (no mask), position_ids (B or 1, S)
    node = ir.node(
        "EmbedLayerNormalization",
        inputs,
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
