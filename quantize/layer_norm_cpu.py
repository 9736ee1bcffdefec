"""SkipLayerNormalization -> Sum + LayerNormalization, for the INT8 artifact on the CPU provider.

    x ─MatMul─┐                                  x ─MatMul─Add(bias)─┐
              SkipLayerNormalization(bias)  ->                       Sum──LayerNormalization
    skip ─────┘                                  skip ───────────────┘

This is the fusion run backwards, on purpose and only here. ONNX Runtime's CPU kernel for
SkipLayerNormalization is several times slower than its plain LayerNormalization kernel
(benchmarks/layer_norm_cpu.py, 2 threads: 0.24 vs 0.04-0.05 ms per 128 x 768 call), and once the
MatMuls are INT8 the 24 of them are a fifth of BERT-14's time. Two details keep the session from undoing it:
- the residual is added with Sum, not Add: the session's SkipLayerNormFusion looks for
  Add -> LayerNormalization and would turn that back into the slow op;
- the dense layer's bias goes back onto its MatMul as an Add, which the session folds into the
  DynamicQuantizeMatMul it makes of the quantized product (a free epilogue instead of a third
  operand of the Sum).
LayerNormalization is an ONNX op from opset 17 on; older graphs keep the fused op. The fp32 and
fp16 artifacts keep the fused op too (its CUDA kernel is fast, and the fused form is what the
fusion gate checks).
"""

from __future__ import annotations

import onnx
from onnx import helper

LAYER_NORMALIZATION_OPSET = 17


def split_skip_layer_norm(model: onnx.ModelProto, bias_in_sum: bool = False) -> int:
    """Rewrite in place every SkipLayerNormalization whose only used output is the normalized one
    (its optional mean / inverse-std / sum outputs unread); returns the count. `bias_in_sum`: the
    dense layer's bias is a third operand of the Sum instead of an Add on the product (per_token.py:
    no bias may be folded into a MatMulIntegerToFloat with per-row scales)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < LAYER_NORMALIZATION_OPSET:
        return 0
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        extra_used = any(name and name in read for name in node.output[1:])
        if node.op_type != "SkipLayerNormalization" or node.domain != "com.microsoft" or extra_used:
            nodes.append(node)
            continue
        x, skip, gamma = node.input[:3]
        beta = node.input[3] if len(node.input) > 3 and node.input[3] else None
        bias = node.input[4] if len(node.input) > 4 and node.input[4] else None
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        p = f"{node.name or f'skip_ln_{count}'}/"
        terms = [x, skip]
        if bias and bias_in_sum:
            terms = [x, bias, skip]
        elif bias:
            nodes.append(helper.make_node("Add", [x, bias], [p + "biased"], name=p + "Bias"))  # (B, S, H)
            terms = [p + "biased", skip]
        nodes.append(helper.make_node("Sum", terms, [p + "sum"], name=p + "Residual"))  # (B, S, H)
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [p + "sum", gamma] + ([beta] if beta else []),
                [node.output[0]],
                axis=-1,
                epsilon=epsilon,
                name=p + "LayerNorm",
            )
        )
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count
