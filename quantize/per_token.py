"""Batch-invariant INT8: every activation row quantized with its own scale, so a text gets the same
integers, and the same scores bit for bit, whatever else is in its batch and however it is padded.

    x (B, S, K) ─ReduceMax(-1)─┐
                ─ReduceMin(-1)─Neg─Max(·, ·, tiny)─Mul(1/127)── scale (B, S, 1)
    x ─QuantizeLinear(scale, zp 128, axis 2, block K)── q uint8 (B, S, K)       [opset 21, blocked]
    q ─MatMulIntegerToFloat(W int8 per column, scale, w_scale, 128, 0)── y (B, S, N)   [com.microsoft]

Per layer, from the fused fp32 graph:

    Attention(x, Wqkv, bqkv, mask)  ->  x─quant─MatMulIntegerToFloat(Wq), (Wk), (Wv)─MultiHeadAttention(q, k, v,
                                        bias=bqkv, key_padding_mask=mask)      [one quantizer, three products]
    MatMul(x, W) -> SkipLayerNormalization(bias)  ->  x─quant─MatMulIntegerToFloat(W)─Sum(·, bias, skip)─LayerNorm
    MatMul(x, W) -> BiasGelu(bias)                 ->  x─quant─MatMulIntegerToFloat(W)─Sum(·, bias)─Gelu

Status: the default (`DynamicOptions(activations="per_token")`; `--int8-activations per_tensor` builds the
old recipe). Trained fixture, 400 real texts alone / in one call / in shuffled groups of 8: 400 bit-identical
rows and no flip, against 0 of 400 for the per-tensor recipe (benchmarks/invariance.py, docs/numbers.md).
Speed (make bench, full-size BERT-14, 2 cores of an Intel Xeon, 2 threads, 2026-12-06): 1.40x / 1.41x / 1.39x
/ 1.56x the per-tensor INT8's time at 1 x 16 / 1 x 128 / 1 x 512 / 8 x 128, 0.66x its titles/s; 1.19x the
public recipe's time at 1 x 128. Re-run 2026-12-07 on a noisier day (same machine type): 1.31x / 1.37x / 1.11x
/ 1.25x the per-tensor time, 0.75x its titles/s, 1.07x the public recipe's time at 1 x 128. Profile at 8 x
128, ms per run (per-tensor in brackets): MatMulIntegerToFloat 97 (Q, K, V included) and MultiHeadAttention 53
[DynamicQuantizeMatMul 67, QAttention 67 with its QKV]; Sum 38 [9]: the bias Sums, broadcast, are slow in ONNX
Runtime, and Add(bias) + Sum(skip) gained only 1%; ReduceMin 9 + ReduceMax 7 + QuantizeLinear 9 + Max/Mul/Neg
3 [DynamicQuantizeLinear 2]; Gelu 22 [16]. Closing the gap would take a fused kernel: per-row dynamic quantize
+ u8s8 GEMM + bias after the row scale (a contrib op), or ONNX Runtime applying MatMulIntegerToFloat's bias
after a per-row a_scale, which would fold the Sums away.

Measured and dropped: one MatMulIntegerToFloat for the packed QKV and a Split (Split alone was 11 ms of 8 x 128);
SkipLayerNormalization with its bias input in place of Sum + LayerNormalization (6.8 ms against 2.9 at
(8, 128, 768), 2 threads, an ad-hoc interleaved micro-benchmark, 2026-12-07);
BiasGelu instead of Sum + Gelu (ONNX Runtime's CPU BiasGelu adds the bias in a pass of its own over a
temporary buffer: BiasGelu took 38 ms of 8 x 128, Sum + Gelu about 32); the FFN2 input (a GELU output,
>= -0.17) quantized one-sided, shifted by 0.17 onto all 256 levels with zero point 0 and the shift's share
taken off the bias: the same 5 flips on the 600 other-genre texts and mean |dlogit| 0.0146 -> 0.0145, so not
worth its Add; the error was the embedding tables (dynamic.py keeps them fp32).

Why this shape (measured on this 2-core EPYC, ONNX Runtime 1.31.1, 2 threads):
- The per-tensor recipe it replaces (DynamicQuantizeLinear, QAttention's input scale) takes one scale
  over the whole batch, padding included: 0 of 400 real texts kept their scores when batched, 2 labels
  flipped. A scale per row depends on the row alone, and integer accumulation is exact.
- MatMulInteger refuses a per-row zero point and its int8 x int8 path is 13x slower than uint8 x int8,
  so rows are stored as uint8 around a fixed zero point of 128 (symmetric scales): the fast kernel stays.
- The scale is max(-min, max) from ReduceMin and ReduceMax: 0.27 ms against 0.42 ms for Abs + ReduceMax
  on a (128, 768) x (768, 768) product, 0.23 ms for the per-tensor DynamicQuantizeMatMul.
- No bias ever enters MatMulIntegerToFloat: with a per-row a_scale, ONNX Runtime 1.31.1 adds the bias
  before applying that scale (bias x scale: relative error 7.3e-2 against 1.1e-2 without). The QKV bias
  goes to MultiHeadAttention's bias input, the output and FFN biases into the Sum before LayerNorm and
  into BiasGelu, where no session fusion folds them back (Sum, not Add; see layer_norm_cpu.py).
- MatMulNBits (8 bits, accuracy level 4) quantizes per row too but runs another kernel for one row,
  so a text alone did not match itself batched, and it was 1.8x slower at N = 3072: rejected.

The embedding stays QEmbedLayerNormalization (fixed int8 tables, nothing computed from the batch) and
the head stays fp32, as in the per-tensor recipe (dynamic.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bert14.quantize.layers import LayerMap

MS = "com.microsoft"
BLOCKED_QUANTIZE_OPSET = 21  # QuantizeLinear's block_size (one scale per row of K) is opset 21
ZERO_POINT = 128  # uint8 rows, symmetric around it: the u8 x s8 kernel, scales from the row alone
TINY = np.float32(1e-12)  # an all-zero row would otherwise get scale 0 and divide by it


@dataclass
class PerTokenReport:
    attention: int = 0  # Attention -> MatMulIntegerToFloat + MultiHeadAttention
    matmul: int = 0  # MatMul -> MatMulIntegerToFloat
    quantizers: int = 0  # per-row quantize subgraphs (one per distinct activation)


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, reduce_range: bool, per_channel: bool) -> None:
        self.model = model
        self.inits = {i.name: i for i in model.graph.initializer}
        self.new_inits: list[onnx.TensorProto] = []
        self.quantized: dict[str, tuple[str, str]] = {}  # activation -> (uint8 rows, scales)
        self.zero_points: dict[str, str] = {}  # scale tensor -> its zero-point tensor
        self.qmax = 63 if reduce_range else 127  # 7-bit weights where u8 x s8 pairs could saturate (isa.py)
        self.per_channel = per_channel  # False: one scale over the whole weight tensor (--int8-per-tensor)
        self.report = PerTokenReport()
        self._constants()

    def _const(self, name: str, array: np.ndarray) -> str:
        self.new_inits.append(numpy_helper.from_array(array, name))
        return name

    def _constants(self) -> None:
        self.tiny = self._const("per_token/tiny", np.array(TINY, np.float32))
        self.inv127 = self._const("per_token/inv127", np.array(1.0 / 127.0, np.float32))
        self.axis = self._const("per_token/last_axis", np.array([-1], np.int64))
        self.zp = self._const("per_token/zero_point", np.array(ZERO_POINT, np.uint8))
        self.w_zp = self._const("per_token/weight_zero_point", np.array(0, np.int8))

    def weight(self, name: str, columns: slice = slice(None), tag: str = "") -> tuple[str, str, int]:
        """(int8 weight, its per-column scales, K) for `columns` of the fp32 initializer `name` (K, N)."""
        whole = numpy_helper.to_array(self.inits[name]).astype(np.float32)  # (K, N)
        w = whole[:, columns]  # (K, N')
        if self.per_channel:
            scale = np.maximum(np.abs(w).max(axis=0), TINY) / self.qmax  # (N',)
        else:  # one scale for the whole tensor (Q, K and V share the packed weight's), as a (N',) vector
            scale = np.full(w.shape[1], max(np.abs(whole).max(), TINY) / self.qmax, np.float32)
        q = np.clip(np.rint(w / scale), -self.qmax, self.qmax).astype(np.int8)  # (K, N')
        base = f"{name}/per_token{tag}"
        return (self._const(f"{base}/int8", q), self._const(f"{base}/scale", scale.astype(np.float32)), w.shape[0])

    def quantize(self, x: str, k: int, out: list[onnx.NodeProto]) -> tuple[str, str]:
        """(uint8 rows, (B, S, 1) scales) of activation `x`, built once per activation."""
        if x in self.quantized:
            return self.quantized[x]
        p = f"{x}/per_token/"
        out += [
            helper.make_node("ReduceMax", [x, self.axis], [p + "max"], keepdims=1, name=p + "Max"),  # (B, S, 1)
            helper.make_node("ReduceMin", [x, self.axis], [p + "min"], keepdims=1, name=p + "Min"),  # (B, S, 1)
            helper.make_node("Neg", [p + "min"], [p + "neg_min"], name=p + "Neg"),
            helper.make_node("Max", [p + "neg_min", p + "max", self.tiny], [p + "absmax"], name=p + "AbsMax"),
            helper.make_node("Mul", [p + "absmax", self.inv127], [p + "scale"], name=p + "Scale"),  # (B, S, 1)
            helper.make_node("Shape", [p + "scale"], [p + "shape"], name=p + "Shape"),
            helper.make_node("Expand", [self.zp, p + "shape"], [p + "zp"], name=p + "ZeroPoint"),  # (B, S, 1)
            helper.make_node(
                "QuantizeLinear", [x, p + "scale", p + "zp"], [p + "q"], axis=2, block_size=k, name=p + "Quantize"
            ),  # (B, S, K) uint8
        ]
        self.quantized[x] = (p + "q", p + "scale")
        self.report.quantizers += 1
        return self.quantized[x]

    def matmul(self, x: str, weight: str, y: str, out: list[onnx.NodeProto], columns: slice = slice(None),
               tag: str = "") -> None:  # fmt: skip
        q_w, w_scale, k = self.weight(weight, columns, tag)
        q, scale = self.quantize(x, k, out)
        out.append(
            helper.make_node(
                "MatMulIntegerToFloat", [q, q_w, scale, w_scale, self.zp, self.w_zp], [y], name=f"{y}/MatMulInteger",
                domain=MS,
            )
        )  # fmt: skip

    def attention(self, node: onnx.NodeProto, out: list[onnx.NodeProto]) -> None:
        """One integer product each for Q, K and V (no Split copy), the bias in MultiHeadAttention."""
        x, weight, bias = node.input[:3]
        mask = node.input[3] if len(node.input) > 3 else ""
        heads = next(a.i for a in node.attribute if a.name == "num_heads")
        hidden = self.inits[weight].dims[1] // 3
        p = f"{node.name}/per_token/"
        for i, part in enumerate("qkv"):
            self.matmul(x, weight, p + part, out, slice(i * hidden, (i + 1) * hidden), f"/{part}")  # (B, S, H)
        out.append(
            helper.make_node(
                "MultiHeadAttention", [p + "q", p + "k", p + "v", bias, mask], [node.output[0]], num_heads=heads,
                name=p + "MultiHeadAttention", domain=MS,
            )
        )  # fmt: skip

    def bias_gelu(self, node: onnx.NodeProto, out: list[onnx.NodeProto]) -> None:
        """BiasGelu(h, b) -> Sum(h, b) + Gelu: ONNX Runtime's CPU BiasGelu adds the bias in a pass of its own
        over a temporary buffer, and its BiasGelu fusion matches Add, not Sum, so the session leaves this be."""
        x, bias = node.input
        p = f"{node.name}/per_token/"
        out.append(helper.make_node("Sum", [x, bias], [p + "biased"], name=p + "Bias"))
        out.append(helper.make_node("Gelu", [p + "biased"], [node.output[0]], name=p + "Gelu", domain=MS))


def quantize_per_token(
    model: onnx.ModelProto, mapping: LayerMap, excluded: set[str], reduce_range: bool, per_channel: bool = True
) -> PerTokenReport:
    """Rewrite in place every Attention and initializer-weighted MatMul of the encoder layers that is not
    in `excluded` (see the module's docstring); returns what was rewritten."""
    rewriter = _Rewriter(model, reduce_range, per_channel)
    encoder = {name for layer in mapping.layers for name in layer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        inside = node.name in encoder and node.name not in excluded
        if inside and node.op_type == "Attention" and node.domain == MS:
            rewriter.attention(node, nodes)
            rewriter.report.attention += 1
        elif inside and node.op_type == "MatMul" and node.input[1] in rewriter.inits:
            rewriter.matmul(node.input[0], node.input[1], node.output[0], nodes)
            rewriter.report.matmul += 1
        elif inside and node.op_type == "BiasGelu" and node.domain == MS and len(node.input) == 2:
            rewriter.bias_gelu(node, nodes)
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(rewriter.new_inits)
    used = {name for node in model.graph.node for name in node.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, BLOCKED_QUANTIZE_OPSET)
    return rewriter.report
