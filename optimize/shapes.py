"""Shape propagation through a graph that already holds com.microsoft ops.

ONNX's shape inference does not know the contrib ops and keeps whatever dims a value had, so after
a fusion the values downstream of a fused op keep stale symbolic dims (fresh unknowns from the
dynamic Reshapes that were fused away). Rules that compare dims (onnxscript's SkipLayerNorm
checks that the residual and the dense output are both (B, S, D)) then refuse to match. This pass
walks the graph in order, gives each fused op's outputs the dims its inputs imply, and re-infers
every standard op from its inputs with ONNX's per-node inference.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import TopologicalSortPass

# Fused ops whose first output has the shape of their first input: (B, S, hidden).
_SAME_AS_INPUT = {"Attention", "SkipLayerNormalization", "BiasGelu", "Gelu", "FastGelu", "QAttention"}


def _type_proto(value: ir.Value) -> onnx.TypeProto | None:
    if value.type is None:
        return None
    proto = ir.serde.serialize_type(value.type)
    if value.shape is not None:
        ir.serde.serialize_shape_into(proto, value.shape)
    return proto


def _infer_standard(node: ir.Node, opset: int) -> None:
    types = {x.name: _type_proto(x) for x in node.inputs if x is not None}
    if any(t is None for t in types.values()):
        return
    data = {}
    for x in node.inputs:
        if x is not None and x.const_value is not None and x.const_value.size <= 64:
            data[x.name] = ir.serde.serialize_tensor(x.const_value)
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        inferred = onnx.shape_inference.infer_node_outputs(schema, ir.serde.serialize_node(node), types, data)
    except Exception:  # noqa: BLE001  (an op ONNX cannot infer keeps no dims; rules then refuse it)
        return
    for output in node.outputs:
        if output.name in inferred:
            output.shape = ir.serde.deserialize_type_proto_for_shape(inferred[output.name])
            output.type = ir.serde.deserialize_type_proto_for_type(inferred[output.name])


def propagate_shapes(model: ir.Model) -> None:
    TopologicalSortPass()(model)
    opset = model.opset_imports.get("", 18)
    for node in model.graph:
        if node.domain in ("", "ai.onnx"):
            for output in node.outputs:
                if not output.is_graph_output():
                    output.shape = None
            _infer_standard(node, opset)
        elif node.op_type in _SAME_AS_INPUT and node.inputs[0] is not None:
            node.outputs[0].shape = node.inputs[0].shape
            node.outputs[0].type = node.inputs[0].type
        elif node.op_type == "EmbedLayerNormalization":
            ids, table = node.inputs[0], node.inputs[2]
            if ids is not None and ids.shape is not None and table is not None and table.shape is not None:
                node.outputs[0].shape = ir.Shape([*ids.shape, table.shape[1]])  # (B, S, hidden)
            if table is not None:
                node.outputs[0].type = table.type
            if len(node.outputs) > 1:
                node.outputs[1].type = ir.TensorType(ir.DataType.INT32)
