"""Small helpers over onnx_ir shared by the fusion families."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

MS_DOMAIN = "com.microsoft"


def producer(value: ir.Value | None, op_type: str | tuple[str, ...] | None = None) -> ir.Node | None:
    """The node that makes `value`, if any (and of the given op type, when one is named)."""
    if value is None:
        return None
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    if op_type is not None and node.op_type not in ((op_type,) if isinstance(op_type, str) else op_type):
        return None
    return node


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's content when it is an initializer or a Constant node's output."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def ints(node: ir.Node, name: str) -> tuple[int, ...] | None:
    attribute = node.attributes.get(name)
    return None if attribute is None else tuple(attribute.as_ints())


def only_consumer(value: ir.Value) -> ir.Node | None:
    consumers = list(value.consumers())
    return consumers[0] if len(consumers) == 1 else None


def rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def graph_input(model: ir.Model, name: str) -> ir.Value | None:
    return next((value for value in model.graph.inputs if value.name == name), None)


def add_initializer(model: ir.Model, name: str, array: np.ndarray) -> ir.Value:
    """A new initializer with a name not yet used in the graph."""
    taken = set(model.graph.initializers)
    unique, counter = name, 0
    while unique in taken:
        counter += 1
        unique = f"{name}_{counter}"
    value = ir.Value(name=unique, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.FLOAT))
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=unique)
    if array.dtype != np.float32:
        value.type = ir.TensorType(value.const_value.dtype)
    model.graph.register_initializer(value)
    return value


def replace_value(old: ir.Value, new: ir.Value) -> None:
    """Every use of `old` (graph outputs too) now reads `new`, which takes over `old`'s name."""
    name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    old.name = f"{name}.replaced"
    new.name = name


def count_ops(model: ir.Model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def remove_unused(model: ir.Model) -> None:
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    RemoveUnusedNodesPass()(model)
