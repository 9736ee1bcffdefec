"""SkipLayerNormalization -> elementwise ops, for the INT8 artifact on the CPU provider.

    SkipLayerNormalization(x, skip, gamma, beta, bias)
      ->  s = x + skip (+ bias);  d = s - ReduceMean(s);  v = ReduceMean(d * d)
          y = d / Sqrt(v + epsilon) * gamma + beta

This is the fusion run backwards, on purpose and only here. ONNX Runtime's CPU kernel for
SkipLayerNormalization costs 0.38 ms per 128 x 768 call on one thread (benchmarks/layer_norm_cpu.py,
ONNX Runtime 1.31.1 on this project's machine), and once the MatMuls are INT8 the 24 of them are a
fifth of BERT-14's time. Its plain LayerNormalization kernel is fast (0.04 ms), but Add +
LayerNormalization is no way out: the session's own SkipLayerNormFusion turns it back into the
slow op under default session options (0.38 ms again). The ten elementwise ops above cost 0.07 ms
and are left alone by the session's fusions (measured the same with optimizations on and off). The
fp32 and fp16 artifacts keep the fused op (its CUDA kernel is fast, and the fused form is what the
fusion gate checks).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

AXES = "bert14_layer_norm_axes"


def decompose_skip_layer_norm(model: onnx.ModelProto) -> int:
    """Rewrite in place every SkipLayerNormalization whose only used output is the normalized one
    (its optional mean / inverse-std / sum outputs unread); returns the count."""
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    nodes: list[onnx.NodeProto] = []
    count = 0
    epsilons: dict[float, str] = {}
    for node in model.graph.node:
        extra_used = any(name and name in read for name in node.output[1:])
        if node.op_type != "SkipLayerNormalization" or node.domain != "com.microsoft" or extra_used:
            nodes.append(node)
            continue
        x, skip, gamma = node.input[:3]
        beta = node.input[3] if len(node.input) > 3 and node.input[3] else None
        bias = node.input[4] if len(node.input) > 4 and node.input[4] else None
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        if epsilon not in epsilons:
            epsilons[epsilon] = f"bert14_layer_norm_epsilon_{len(epsilons)}"
            model.graph.initializer.append(numpy_helper.from_array(np.array(epsilon, np.float32), epsilons[epsilon]))
        p = f"{node.name or f'skip_ln_{count}'}/"
        summed = p + "sum"
        nodes.append(helper.make_node("Add", [x, skip], [summed], name=p + "Add"))
        if bias:
            nodes.append(helper.make_node("Add", [summed, bias], [p + "sum_bias"], name=p + "AddBias"))
            summed = p + "sum_bias"
        last = node.output[0] if beta is None else p + "scaled"
        nodes += [
            helper.make_node("ReduceMean", [summed, AXES], [p + "mean"], keepdims=1, name=p + "Mean"),
            helper.make_node("Sub", [summed, p + "mean"], [p + "centered"], name=p + "Sub"),
            helper.make_node("Mul", [p + "centered", p + "centered"], [p + "squared"], name=p + "Square"),
            helper.make_node("ReduceMean", [p + "squared", AXES], [p + "variance"], keepdims=1, name=p + "Var"),
            helper.make_node("Add", [p + "variance", epsilons[epsilon]], [p + "variance_eps"], name=p + "AddEps"),
            helper.make_node("Sqrt", [p + "variance_eps"], [p + "std"], name=p + "Sqrt"),
            helper.make_node("Div", [p + "centered", p + "std"], [p + "normalized"], name=p + "Div"),
            helper.make_node("Mul", [p + "normalized", gamma], [last], name=p + "Gamma"),
        ]
        if beta is not None:
            nodes.append(helper.make_node("Add", [last, beta], [node.output[0]], name=p + "Beta"))
        count += 1
    if count:
        model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), AXES))
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count
