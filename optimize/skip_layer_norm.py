"""SkipLayerNormalization: residual Add (+ the dense layer's bias) and LayerNorm -> one op.

    dense ─Add(bias)─┐
    residual ────────Add── LayerNormalization(gamma, beta)

Becomes:  SkipLayerNormalization(dense, residual, gamma, beta, bias), domain com.microsoft.

onnxscript's ort_fusions rule matches this in both operand orders and folds the bias in; this
module runs it. It must run after EmbedLayerNormalization: the embedding sum (word + type +
position) followed by LayerNorm also has the shape "Add then LayerNorm" and would otherwise be
taken as a skip connection. Refused by onnxscript's check: mismatched hidden sizes, non-constant
gamma/beta/bias, a LayerNorm not over the last axis.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter.ort_fusions.skip_normalization import skip_layer_normalization_ruleset

from bert14.optimize.passes import PassResult, apply_rules


def fuse_skip_layer_norm(model: ir.Model, debug: bool = False) -> PassResult:
    return apply_rules(model, skip_layer_normalization_ruleset, debug)
