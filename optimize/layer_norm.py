"""LayerNormalization: a decomposed LayerNorm (older exports) -> the standard op.

    x ─ReduceMean─┐
    x ────────────Sub── Pow(2) ─ReduceMean─Add(eps)─Sqrt─┐
                   └─────────────────────────────────────Div─Mul(gamma)─Add(beta)

Becomes:  LayerNormalization(x, gamma, beta, axis=-1, epsilon), domain ai.onnx (opset >= 17).

onnxscript's rule does this well (it also accepts Mul(d, d) and Mul(d, Reciprocal(std))); this
module runs it. It matches ReduceMean with axes as an input, so the pipeline first converts graphs
below opset 18 (where axes are an attribute) to opset 18. Refused: reductions over any axis but
the last, a non-constant epsilon, non-float inputs.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter.rules.fusion._layer_norm import layer_normalization_ruleset

from bert14.optimize.graph import count_ops
from bert14.optimize.passes import PassResult, apply_rules


def fuse_decomposed_layer_norm(model: ir.Model, debug: bool = False) -> PassResult:
    """Count: LayerNormalization nodes made (the rule set rewrites twice per LayerNorm: once
    without beta, once folding the beta Add in)."""
    before = count_ops(model).get("LayerNormalization", 0)
    applied = apply_rules(model, layer_normalization_ruleset, debug)
    return PassResult(count_ops(model).get("LayerNormalization", 0) - before, applied.refused)
