"""First-token tail: the classifier reads one token, so the last layer's per-token work runs on it alone.

    x ──Attention──a──MatMul─SkipLN(x)──h──MatMul─BiasGelu─MatMul─SkipLN(h)──y──Gather(axis 1, 0)── pooler
    │                  ▲                                                        (B, S, H) -> (B, H)
    └──────────────────┘
becomes
    x ──Attention──a──Slice(0:1)──MatMul─SkipLN(x')──h──...──SkipLN(h)──y──Gather(axis 1, 0)── pooler
    └──Slice(0:1)──x'                                                     (B, 1, H) -> (B, H)

A sequence classifier's pooler takes the hidden state of token 0 and nothing else. After the last
attention, every op up to that Gather works token by token (dense layers with constant weights,
bias, GELU, residual Add + LayerNorm over the hidden axis), so computing them for all S tokens and
keeping one is wasted work: on BERT-14 at sequence 128 that is the last layer's output projection
and both FFN products for 127 tokens, about a twelfth of the model's arithmetic. The rewrite is
exact: token 0's row gets the same operations on the same numbers.

Only token-wise nodes whose every use lies inside the tail are moved; the walk back from the
Gather stops at anything else (the attention, an op not known to work token by token, a graph
output, a value that something outside reads, such as the layer's input, which the attention reads
for all tokens), and those values are sliced instead. Refused, with a reason, and the graph left
alone: no Gather of a constant index 0 on axis 1 of a rank-3 value, or a value entering the tail
whose shape is not known to be (batch, token, hidden).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from bert14.optimize.graph import MS_DOMAIN, add_initializer, constant
from bert14.optimize.passes import PassResult

# Ops that treat each (batch, token) row on its own: constants they read are at most 1-D (bias,
# gamma, beta), except MatMul's weight, which must be a constant 2-D matrix.
_TOKENWISE = {
    ("", "Add"),
    ("", "Sub"),
    ("", "Mul"),
    ("", "Div"),
    ("", "Sum"),
    ("", "Erf"),
    ("", "Tanh"),
    ("", "Relu"),
    ("", "Cast"),
    ("", "MatMul"),
    ("", "LayerNormalization"),
    (MS_DOMAIN, "SkipLayerNormalization"),
    (MS_DOMAIN, "BiasGelu"),
    (MS_DOMAIN, "Gelu"),
    (MS_DOMAIN, "FastGelu"),
}


def _domain(node: ir.Node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def _head_gather(model: ir.Model) -> ir.Node | None:
    """The Gather(data, 0, axis=1) that picks token 0 of a rank-3 value for the head."""
    for node in model.graph:
        if node.op_type != "Gather" or _domain(node) != "" or len(node.inputs) != 2:
            continue
        axis = node.attributes.get("axis")
        index = constant(node.inputs[1])
        data = node.inputs[0]
        if axis is None or axis.as_int() != 1 or index is None or index.size != 1 or int(index.reshape(())) != 0:
            continue
        if data is not None and data.shape is not None and len(data.shape) == 3:
            return node
    return None


def _tokenwise_reason(node: ir.Node) -> str | None:
    """None when `node` works row by row on its activations; otherwise why not."""
    if (_domain(node), node.op_type) not in _TOKENWISE:
        return f"{node.op_type} ({node.name}) is not known to work token by token"
    if node.op_type == "LayerNormalization":
        axis = node.attributes.get("axis")
        if axis is not None and axis.as_int() not in (-1, 2):
            return f"LayerNormalization {node.name} normalizes over axis {axis.as_int()}, not the hidden axis"
    for position, value in enumerate(node.inputs):
        if value is None:
            continue
        array = constant(value)
        if array is None:
            if node.op_type == "MatMul" and position == 1:
                return f"MatMul {node.name} multiplies two activations"
            continue
        limit = 2 if node.op_type == "MatMul" and position == 1 else 1
        if array.ndim > limit:
            return f"{node.op_type} {node.name} reads a {array.ndim}-D constant {value.name}"
    return None


def run_tail_on_first_token(model: ir.Model) -> PassResult:
    """Move the tail before the head's token-0 Gather onto one token; count: nodes moved."""
    gather = _head_gather(model)
    if gather is None:
        return PassResult(0, ("no Gather of token 0 (axis 1, constant index 0) on a rank-3 value",))
    order = list(model.graph)
    position = {id(node): i for i, node in enumerate(order)}
    tail: set[int] = set()
    # Walk back from the Gather; a token-wise node joins when every reader of its outputs is in.
    # Whatever stops the walk (the attention, a value also read elsewhere) is sliced to token 0.
    pending = [gather.inputs[0].producer()]
    while pending:
        node = pending.pop()
        if node is None or id(node) in tail or _tokenwise_reason(node) is not None:
            continue
        if any(out.is_graph_output() for out in node.outputs):
            continue
        readers = [use.node for out in node.outputs for use in out.uses()]
        if any(reader is not gather and id(reader) not in tail for reader in readers):
            continue
        tail.add(id(node))
        pending += [value.producer() for value in node.inputs if value is not None and constant(value) is None]
    if not tail:
        return PassResult(0, ("nothing between the last attention and the head works token by token",))
    members = sorted((node for node in order if id(node) in tail), key=lambda node: position[id(node)])
    frontier = {
        id(value): value
        for node in members
        for value in node.inputs
        if value is not None
        and constant(value) is None
        and (value.producer() is None or id(value.producer()) not in tail)
    }
    for value in frontier.values():
        if value.shape is None or len(value.shape) != 3:
            return PassResult(0, (f"{value.name} enters the tail without a known (batch, token, hidden) shape",))

    starts = add_initializer(model, "first_token_starts", np.array([0], np.int64))
    ends = add_initializer(model, "first_token_ends", np.array([1], np.int64))
    axes = add_initializer(model, "first_token_axes", np.array([1], np.int64))
    sliced: dict[int, ir.Value] = {}
    for node in members:
        for index, value in enumerate(node.inputs):
            if value is None or id(value) not in frontier:
                continue
            if id(value) not in sliced:
                slice_node = ir.node(
                    "Slice", [value, starts, ends, axes], name=f"first_token/{value.name}", num_outputs=1
                )
                slice_node.outputs[0].name = f"{value.name}.first_token"  # (B, 1, H)
                slice_node.outputs[0].type = value.type
                model.graph.insert_before(members[0], slice_node)
                sliced[id(value)] = slice_node.outputs[0]
            node.replace_input_with(index, sliced[id(value)])
    return PassResult(len(members))
