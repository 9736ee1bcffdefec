"""Proof by evaluation: run the small subgraph that computes a value on probe inputs.

The exporters compute the attention bias and the position ids through long, version-dependent
chains of Shape/Range/Expand/Where/GatherND. Rather than match each chain's shape, a fusion that
wants to replace such a value (the 4-D additive mask by the raw 2-D mask, the position gather by
the fused op's implicit 0..S-1) evaluates the subgraph that produces it from the graph inputs, on
masks with right, left, no and all-but-one padding at two sequence lengths, and accepts the
replacement only when the numbers say it is equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from bert14.runtime.engines import SessionSettings
from bert14.runtime.engines.onnxruntime import session_options

# A bias this negative zeroes a softmax term in fp32 (exp(-1e4) underflows), which is what
# ONNX Runtime's raw-mask attention does with its default mask_filter_value of -10000.
MASKED_BIAS_MAX = -1e4


@dataclass(frozen=True)
class ProbeFeed:
    input_ids: np.ndarray  # (B, S)
    attention_mask: np.ndarray  # (B, S)
    token_type_ids: np.ndarray  # (B, S)


# The probes' ids: word ids 1..97 and token types 0 and 1, fewer where the model's tables are smaller.
PROBE_WORD_IDS = 97
PROBE_TOKEN_TYPES = 2


def probe_feeds(model: ir.Model | None = None) -> list[ProbeFeed]:
    """The probe inputs; with `model`, ids stay inside the embedding tables it gathers from (a
    checkpoint with type_vocab_size 1 has no token type 1)."""
    words, types = table_rows(model) if model is not None else (None, None)
    word_ids = min(PROBE_WORD_IDS, words - 1) if words and words > 1 else PROBE_WORD_IDS
    second_type = 1 if (types or PROBE_TOKEN_TYPES) >= PROBE_TOKEN_TYPES else 0
    feeds = []
    for sequence in (7, 3):
        rows = [
            [1] * sequence,  # no padding
            [1] * (sequence - 2) + [0] * 2,  # right padding
            [0] * (sequence - 2) + [1] * 2,  # left padding
            [1] + [0] * (sequence - 1),  # all but one padded, right
            [0] * (sequence - 1) + [1],  # all but one padded, left
        ]
        mask = np.array(rows, dtype=np.int64)  # (5, S)
        ids = np.arange(mask.size, dtype=np.int64).reshape(mask.shape) % word_ids + 1
        token_type = np.zeros_like(mask)
        token_type[:, sequence // 2 :] = second_type
        feeds.append(ProbeFeed(ids * mask, mask, token_type * mask))
    return feeds


PROBED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# EmbedLayerNormalization's (ids input, table input) pairs, for a graph already fused.
_FUSED_TABLES = {"input_ids": (0, 2), "token_type_ids": (1, 4)}


def table_rows(model: ir.Model) -> tuple[int | None, int | None]:
    """Rows of the tables `input_ids` and `token_type_ids` index: a Gather of a constant table by
    the input (or its Cast), or a fused EmbedLayerNormalization; None where the graph has none."""
    rows: dict[str, int] = {}
    for node in model.graph.all_nodes():
        pairs = []
        if node.op_type == "Gather" and len(node.inputs) == 2:
            pairs.append((node.inputs[1], node.inputs[0]))
        elif node.op_type == "EmbedLayerNormalization":
            pairs += [(node.inputs[i], node.inputs[t]) for i, t in _FUSED_TABLES.values() if t < len(node.inputs)]
        for index, table in pairs:
            source = _input_name(index)
            if source in _FUSED_TABLES and table is not None and table.const_value is not None:
                rows.setdefault(source, int(table.const_value.shape[0]))
    return rows.get("input_ids"), rows.get("token_type_ids")


def _input_name(value: ir.Value | None) -> str | None:
    """The graph input `value` is, directly or through one Cast."""
    if value is not None and not value.is_graph_input() and value.producer() is not None:
        if value.producer().op_type == "Cast":
            value = value.producer().inputs[0]
    return value.name if value is not None and value.is_graph_input() else None


def _graph_inputs_behind(values: list[ir.Value]) -> list[ir.Value]:
    """The graph inputs that `values` are computed from, in first-seen order."""
    found: list[ir.Value] = []
    seen: set[int] = set()
    stack = list(values)
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if value.is_graph_input():
            found.append(value)
            continue
        node = value.producer()
        if node is not None:
            stack.extend(v for v in node.inputs if v is not None)
    return found


def evaluate(model: ir.Model, values: list[ir.Value], feeds: list[ProbeFeed]) -> list[list[np.ndarray]]:
    """`values` computed from the graph inputs for each feed: result[feed][value]."""
    needed = _graph_inputs_behind(values)
    unknown = [value.name for value in needed if value.name not in PROBED_INPUTS]
    if unknown:
        raise ValueError(f"depends on graph inputs {unknown}, not only on {PROBED_INPUTS}")
    graph = ir.convenience.extract(model.graph, inputs=needed, outputs=values)
    probe = ir.Model(graph, ir_version=model.ir_version)
    proto = ir.to_proto(probe)
    options = session_options(SessionSettings(optimized=False))  # the subgraph as written
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [value.name for value in graph.outputs]
    results = []
    for feed in feeds:
        available = {
            "input_ids": feed.input_ids,
            "attention_mask": feed.attention_mask,
            "token_type_ids": feed.token_type_ids,
        }
        session_inputs = {i.name: available[i.name] for i in session.get_inputs()}
        results.append(session.run(names, session_inputs))
    return results


def is_key_padding_bias(bias: np.ndarray, mask: np.ndarray) -> str | None:
    """None when `bias` is 0 for kept keys and <= MASKED_BIAS_MAX for padded ones, for every
    query and head; otherwise the reason it is not."""
    batch, sequence = mask.shape
    if bias.dtype == np.bool_:  # a boolean "may attend" mask instead of an additive bias
        bias = np.where(bias, 0.0, -np.inf)
    try:
        full = np.broadcast_to(bias, (batch, 1, sequence, sequence)) if bias.ndim == 4 else None
    except ValueError:
        full = None
    if full is None:
        return f"bias of shape {bias.shape} does not broadcast to (batch, 1, S, S)"
    keep = mask.astype(bool)[:, None, None, :]  # (B, 1, 1, S)
    if not np.all(full[np.broadcast_to(keep, full.shape)] == 0):
        return "bias is not 0 where the mask keeps a key"
    if not np.all(full[np.broadcast_to(~keep, full.shape)] <= MASKED_BIAS_MAX):
        return f"bias is not <= {MASKED_BIAS_MAX:g} where the mask drops a key"
    return None
