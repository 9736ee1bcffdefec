"""Attention: a BERT self-attention block -> com.microsoft Attention with packed QKV weights.

    X ─MatMul(Wq)─Add(bq)─{Reshape|Transpose|Mul c}*─┐                      q: (B, H, S, D)
    X ─MatMul(Wk)─Add(bk)─{Reshape|Transpose|Mul c}*─MatMul─[Mul|Div c]─Add(bias)─Softmax─┐
                                                     k: (B, H, D, S)  or Where(keep, ., -inf)
    X ─MatMul(Wv)─Add(bv)─{Reshape|Transpose}*──────────────────────────MatMul─[Where(IsNaN)]
                                                     v: (B, H, S, D)       │
                                            Reshape(B, S, H*D) ─ Transpose(0, 2, 1, 3)

The chains between the projections and the score MatMul differ by exporter (TorchScript splits
heads with Reshape + Transpose(0,2,3,1) for K; dynamo's SDPA decomposition merges batch and heads,
transposes, splits again, and scales Q and K by sqrt(scale) each). Rather than one pattern per
variant, the rule follows each chain and tracks which logical axis (batch, sequence, heads, head
size) each dimension holds, so any chain that ends in the right layout matches.

Becomes:  Attention(X, [Wq|Wk|Wv], [bq|bk|bv], mask_index=Cast(attention_mask, int32))
          domain com.microsoft, num_heads = H, scale = the product of the chain's constants.

The raw 2-D mask is used (not the 1-D mask-index of sequence lengths), so left padding and
all-but-one padding stay right. The 4-D bias it replaces is proven equal to a key-padding mask
by evaluating it on probe masks (probe.py); a block whose bias is anything else (causal, per-head,
learned) is refused. Also refused: Q, K, V reading different inputs, weights or biases that are
not constants, a layout other than the ones above, and a missing head count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from bert14.optimize.graph import (
    MS_DOMAIN,
    add_initializer,
    constant,
    graph_input,
    ints,
    only_consumer,
    producer,
    rank,
    replace_value,
)
from bert14.optimize.passes import PassResult, Refusal
from bert14.optimize.probe import evaluate, is_key_padding_bias, probe_feeds

# |scale - 1/sqrt(D)| below this is the default scale; float32 rounding of sqrt(scale) squared.
SCALE_RTOL = 1e-5
_HEAD_LAYOUT = ("B", "H", "S", "D")
_KEY_LAYOUT = ("B", "H", "D", "S")


@dataclass
class Projection:
    input: ir.Value  # (B, S, hidden)
    weight: np.ndarray  # (hidden, hidden)
    bias: np.ndarray  # (hidden,)


@dataclass
class Chain:
    projection: Projection
    layout: tuple[object, ...]
    scale: float
    head_size: int | None


@dataclass
class AttentionMatch:
    softmax: ir.Node
    q: Chain
    k: Chain
    v: Chain
    bias: ir.Value | None  # additive (float) or boolean keep-mask, before the softmax
    output: ir.Value  # (B, S, hidden), what the fused node replaces
    scale: float


def projection(value: ir.Value) -> Projection:
    add = producer(value, "Add")
    if add is None:
        raise Refusal(f"{value.name}: expected Add(MatMul(X, W), b) as the projection")
    for data, bias in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
        bias_array = constant(bias)
        matmul = producer(data, "MatMul")
        if bias_array is None or bias_array.ndim != 1 or matmul is None:
            continue
        weight = constant(matmul.inputs[1])
        if weight is None or weight.ndim != 2 or weight.shape[1] != bias_array.shape[0]:
            raise Refusal(f"{matmul.name}: expected a constant 2-D weight matching the bias")
        return Projection(matmul.inputs[0], weight, bias_array)
    raise Refusal(f"{add.name}: expected a constant 1-D bias added to a MatMul")


def _scalar_operand(node: ir.Node) -> tuple[ir.Value, float] | None:
    """(data input, factor) for Mul/Div by a scalar constant."""
    for data_index, const_index in ((0, 1), (1, 0)):
        array = constant(node.inputs[const_index])
        if array is not None and array.size == 1:
            if node.op_type == "Div":
                return (node.inputs[0], 1.0 / float(array.reshape(()))) if const_index == 1 else None
            return node.inputs[data_index], float(array.reshape(()))
    return None


def _reshape_rank(node: ir.Node) -> int | None:
    out_rank = rank(node.outputs[0])
    if out_rank is None and node.inputs[1] is not None and node.inputs[1].shape is not None:
        dims = node.inputs[1].shape
        out_rank = dims[0] if len(dims) == 1 and isinstance(dims[0], int) else None
    return out_rank


def _last_static_dim(value: ir.Value) -> int | None:
    if value.shape is None or not len(value.shape):
        return None
    last = value.shape[-1]
    return last if isinstance(last, int) else None


def _replay(layout: list[object], node: ir.Node) -> list[object]:
    """The logical layout after one Transpose or Reshape."""
    if node.op_type == "Transpose":
        perm = ints(node, "perm") or tuple(reversed(range(len(layout))))
        if len(perm) != len(layout):
            raise Refusal(f"{node.name}: transpose of rank {len(perm)} on a rank-{len(layout)} tensor")
        return [layout[p] for p in perm]
    out_rank = _reshape_rank(node)
    if out_rank == len(layout):
        return layout  # a view that keeps every axis (TorchScript's sdpa export adds one)
    if layout == ["B", "S", "N"] and out_rank == 4:
        return ["B", "S", "H", "D"]
    if out_rank == len(layout) - 1 and layout[-2:] == ["H", "D"]:
        return [*layout[:-2], "N"]
    if out_rank == len(layout) - 1:
        return [(layout[0], layout[1]), *layout[2:]]
    if out_rank == len(layout) + 1 and isinstance(layout[0], tuple):
        return [*layout[0], *layout[1:]]
    raise Refusal(f"{node.name}: reshape to rank {out_rank} is not a head split or merge")


def head_chain(value: ir.Value) -> Chain:
    """Follow Reshape/Transpose/scalar Mul back to the projection; replay them to get the layout."""
    steps: list[ir.Node] = []
    scale = 1.0
    while True:
        node = producer(value)
        if node is None:
            raise Refusal(f"{value.name}: chain ends before reaching a projection")
        if node.op_type in ("Transpose", "Reshape"):
            steps.append(node)
            value = node.inputs[0]
        elif node.op_type in ("Mul", "Div") and _scalar_operand(node) is not None:
            value, factor = _scalar_operand(node)  # type: ignore[misc]
            scale *= factor
        elif node.op_type == "Add":
            break
        else:
            raise Refusal(f"{node.name}: unexpected {node.op_type} between a projection and the attention")
    proj = projection(value)
    layout: list[object] = ["B", "S", "N"]
    head_size = None
    for node in reversed(steps):
        before = layout
        layout = _replay(layout, node)
        if before == ["B", "S", "N"] and layout == ["B", "S", "H", "D"]:
            head_size = _last_static_dim(node.outputs[0])
    return Chain(proj, tuple(layout), scale, head_size)


def _scores(value: ir.Value) -> tuple[ir.Node, float] | None:
    """The Q.K^T MatMul behind `value` (through scalar Mul/Div) and the factor picked up on the way."""
    scale = 1.0
    while True:
        node = producer(value)
        if node is None:
            return None
        if node.op_type == "MatMul" and constant(node.inputs[1]) is None and constant(node.inputs[0]) is None:
            return node, scale
        if node.op_type in ("Mul", "Div") and _scalar_operand(node) is not None:
            value, factor = _scalar_operand(node)  # type: ignore[misc]
            scale *= factor
            continue
        return None


def _split_bias(softmax: ir.Node) -> tuple[ir.Node, float, ir.Value | None]:
    logits = softmax.inputs[0]
    node = producer(logits)
    if node is not None and node.op_type == "Add":
        for scores_side, bias in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            found = _scores(scores_side)
            if found is not None and _scores(bias) is None:
                return found[0], found[1], bias
    if node is not None and node.op_type == "Where":
        fill = constant(node.inputs[2])
        found = _scores(node.inputs[1])
        if found is not None and fill is not None and fill.size == 1 and float(fill.reshape(())) < -1e4:
            return found[0], found[1], node.inputs[0]
    found = _scores(logits)
    if found is None:
        raise Refusal(f"{softmax.name}: expected Softmax(Q.K^T * scale + mask); its input is not that")
    return found[0], found[1], None


def _probabilities_consumer(softmax: ir.Node) -> ir.Node:
    """The MatMul that applies the probabilities to V, skipping Where(IsNaN(p), 0, p)."""
    probs = softmax.outputs[0]
    consumers = list(probs.consumers())
    isnan = next((c for c in consumers if c.op_type == "IsNaN"), None)
    if isnan is not None:
        where = next((c for c in consumers if c.op_type == "Where"), None)
        if where is None or where.inputs[2] is not probs or len(consumers) != 2:
            raise Refusal(f"{softmax.name}: IsNaN guard on the probabilities is not Where(IsNaN(p), 0, p)")
        probs = where.outputs[0]
    matmul = only_consumer(probs)
    if matmul is None or matmul.op_type != "MatMul" or matmul.inputs[0] is not probs:
        raise Refusal(f"{softmax.name}: expected the probabilities to feed one MatMul with V")
    return matmul


def _data_consumer(value: ir.Value) -> ir.Node | None:
    """The one consumer of `value` that uses its data (Shape consumers only read its shape)."""
    consumers = [c for c in value.consumers() if c.op_type != "Shape"]
    return consumers[0] if len(consumers) == 1 else None


def _output(context: ir.Node) -> ir.Value:
    """Follow Transpose/Reshape from the context (B, H, S, D) to the merged (B, S, hidden)."""
    layout: list[object] = ["B", "H", "S", "D"]
    value = context.outputs[0]
    while True:
        node = _data_consumer(value)
        if node is None or node.op_type not in ("Transpose", "Reshape"):
            raise Refusal(f"{context.name}: expected Transpose/Reshape from (B, H, S, D) back to (B, S, hidden)")
        layout = _replay(layout, node)
        value = node.outputs[0]
        if layout == ["B", "S", "N"]:
            return value


def match(softmax: ir.Node, num_heads: int | None) -> AttentionMatch:
    axis = softmax.attributes.get("axis")
    if axis is not None and axis.as_int() not in (-1, 3):
        raise Refusal(f"{softmax.name}: softmax is not over the last axis")
    scores, score_scale, bias = _split_bias(softmax)
    q, k = head_chain(scores.inputs[0]), head_chain(scores.inputs[1])
    context = _probabilities_consumer(softmax)
    v = head_chain(context.inputs[1])
    for name, chain, want in (("Q", q, _HEAD_LAYOUT), ("K", k, _KEY_LAYOUT), ("V", v, _HEAD_LAYOUT)):
        if chain.layout != want:
            raise Refusal(f"{softmax.name}: {name} arrives as {chain.layout}, expected {want}")
    if v.scale != 1.0:
        raise Refusal(f"{softmax.name}: V is scaled, which Attention cannot express")
    if not (q.projection.input is k.projection.input is v.projection.input):
        raise Refusal(f"{softmax.name}: Q, K and V do not read the same input (not self-attention)")
    hidden = q.projection.weight.shape[1]
    head_size = q.head_size or k.head_size or v.head_size or (hidden // num_heads if num_heads else None)
    if head_size is None or hidden % head_size:
        raise Refusal(f"{softmax.name}: cannot tell the head count; pass num_heads")
    output = _output(context)
    return AttentionMatch(softmax, q, k, v, bias, output, q.scale * k.scale * score_scale)


def check_masks(model: ir.Model, matches: list[AttentionMatch]) -> dict[int, str]:
    """Index of each match whose bias is not a key-padding mask -> why."""
    biases: list[ir.Value] = []
    for m in matches:
        if m.bias is not None and all(m.bias is not b for b in biases):
            biases.append(m.bias)
    if not biases:
        return {}
    if graph_input(model, "attention_mask") is None:
        return {i: "the graph has no attention_mask input to take the mask from" for i in range(len(matches))}
    feeds = probe_feeds(model)
    try:
        results = evaluate(model, biases, feeds)
    except Exception as exc:  # the probe subgraph may not be computable from the inputs alone
        return {i: f"mask subgraph could not be evaluated ({exc})" for i in range(len(matches))}
    reasons: dict[int, str] = {}
    for index, bias in enumerate(biases):
        for feed, values in zip(feeds, results, strict=True):
            reason = is_key_padding_bias(values[index], feed.attention_mask)
            if reason:
                for i, m in enumerate(matches):
                    if m.bias is bias:
                        reasons[i] = f"{bias.name}: {reason}"
                break
    return reasons


def rewrite(model: ir.Model, m: AttentionMatch, mask_index: ir.Value | None) -> None:
    hidden = m.q.projection.weight.shape[1]
    head_size = m.q.head_size or m.k.head_size or m.v.head_size
    assert head_size is not None
    weight = np.concatenate([m.q.projection.weight, m.k.projection.weight, m.v.projection.weight], axis=1)
    bias = np.concatenate([m.q.projection.bias, m.k.projection.bias, m.v.projection.bias])
    prefix = m.softmax.name or "attention"
    w = add_initializer(model, f"{prefix}.qkv_weight", weight.astype(np.float32))  # (hidden, 3 * hidden)
    b = add_initializer(model, f"{prefix}.qkv_bias", bias.astype(np.float32))  # (3 * hidden,)
    attributes: dict[str, object] = {"num_heads": hidden // head_size}
    if abs(m.scale * np.sqrt(head_size) - 1.0) > SCALE_RTOL:
        attributes["scale"] = float(m.scale)
    inputs = [m.q.projection.input, w, b] + ([mask_index] if m.bias is not None else [])
    node = ir.node("Attention", inputs, attributes, domain=MS_DOMAIN, name=f"{prefix}.Attention")
    anchor = m.output.producer()
    model.graph.insert_before(anchor, node)
    replace_value(m.output, node.outputs[0])
    # Same (B, S, hidden) as the input: downstream rules compare symbolic dims, and the old
    # output's dims (fresh unknowns from a dynamic Reshape) would not match the residual's.
    node.outputs[0].shape, node.outputs[0].type = m.q.projection.input.shape, m.output.type


def mask_index_value(model: ir.Model) -> ir.Value:
    """One Cast(attention_mask -> int32) shared by every Attention node: the raw 2-D mask."""
    mask = graph_input(model, "attention_mask")
    assert mask is not None
    cast = ir.node("Cast", [mask], {"to": ir.DataType.INT32}, name="attention_mask_int32")
    cast.outputs[0].name = "attention_mask_int32"
    cast.outputs[0].type = ir.TensorType(ir.DataType.INT32)
    cast.outputs[0].shape = mask.shape
    model.graph.insert_before(model.graph.node(0), cast)
    return cast.outputs[0]


def fuse_attention(model: ir.Model, num_heads: int | None = None) -> PassResult:
    """Fuse every matching block; returns (count, reasons for the candidates that were refused)."""
    matches: list[AttentionMatch] = []
    refused: list[str] = []
    for node in list(model.graph):
        if node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
            try:
                matches.append(match(node, num_heads))
            except Refusal as reason:
                refused.append(str(reason))
    bad = check_masks(model, matches)
    refused.extend(bad.values())
    accepted = [m for i, m in enumerate(matches) if i not in bad]
    if not accepted:
        return PassResult(0, tuple(refused))
    mask_index = mask_index_value(model) if any(m.bias is not None for m in accepted) else None
    for m in accepted:
        rewrite(model, m, mask_index)
    return PassResult(len(accepted), tuple(refused))
