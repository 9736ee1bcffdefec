"""BiasGelu: the FFN's bias Add and the exact (erf) GELU -> one com.microsoft op.

    h ─Add(bias)─┬─Div(sqrt 2)─Erf─Add(1)─┐
                 └─────────────────────────Mul─Mul(0.5)

Becomes, in two steps (onnxscript ort_fusions rules):
    Gelu(h + bias)            (erf form, domain com.microsoft)
    BiasGelu(h, bias)         (domain com.microsoft)

BERT's `hidden_act="gelu"` is the exact erf GELU, so this is BiasGelu, not FastGelu: FastGelu's
tanh approximation differs from it by up to ~5e-4 per activation, which is more than the fp32
parity tolerance (1e-4 on the logits) can absorb across 12 layers. Refused: the tanh form (it would
need FastGelu), a GELU whose constants are not sqrt(2), 1 and 0.5.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter.ort_fusions.bias_gelu import fuse_bias_gelu
from onnxscript.rewriter.ort_fusions.erfgelu import fuse_erfgelu
from onnxscript.rewriter.ort_fusions.gelu import fuse_gelu as fuse_erf_gelu_other_order


def fuse_gelu(model: ir.Model, debug: bool = False) -> int:
    """Number of BiasGelu nodes made (each from one erf GELU with a constant bias before it)."""
    # Two rules for the two association orders the exporters write: 0.5 * x * (1 + erf(x / sqrt 2))
    # (dynamo) and x * (1 + erf(x / sqrt 2)) * 0.5 (TorchScript).
    fuse_erfgelu(model, debug=debug)
    fuse_erf_gelu_other_order(model, debug=debug)
    return fuse_bias_gelu(model, debug=debug)
