"""Which nodes of a fused BERT graph belong to which encoder layer, and which to the head.

Node names depend on the exporter (TorchScript keeps module paths, dynamo does not), so layers
are found from the graph itself: in topological order, each fused Attention opens a layer that
lasts until the next one; the encoder ends at the last SkipLayerNormalization, and what follows
(pooler, classifier) is the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from bert14.errors import InputError


@dataclass
class LayerMap:
    layers: list[list[str]] = field(default_factory=list)  # node names per encoder layer
    head: list[str] = field(default_factory=list)  # node names after the encoder
    embedding: list[str] = field(default_factory=list)  # node names before the first Attention


def _name_all(model: onnx.ModelProto) -> None:
    """Give every node a unique name: quantization selects nodes by name."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)


def layer_map(model: onnx.ModelProto) -> LayerMap:
    _name_all(model)
    nodes = list(model.graph.node)
    attention = [i for i, n in enumerate(nodes) if n.op_type == "Attention" and n.domain == "com.microsoft"]
    skips = [i for i, n in enumerate(nodes) if n.op_type == "SkipLayerNormalization"]
    if not attention or not skips:
        raise InputError("expected a fused BERT graph (Attention and SkipLayerNormalization); run the optimizer first")
    end = skips[-1] + 1
    mapping = LayerMap(embedding=[n.name for n in nodes[: attention[0]]], head=[n.name for n in nodes[end:]])
    bounds = [*attention, end]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        mapping.layers.append([n.name for n in nodes[start:stop]])
    return mapping
