"""Dynamic INT8 quantization of the fused graph for the CPU provider.

Weights are stored as int8; activations are quantized at run time. Applied after fusion.

- activations="per_token" (the default): each token row of each activation gets its own scale
  (per_token.py), so a text gets the same scores bit for bit whatever it is batched with.
- activations="per_tensor": one scale per activation tensor over the whole batch, padding included;
  each Attention becomes QAttention (its packed QKV GEMM runs in integers), each MatMul a
  MatMulInteger that ONNX Runtime fuses into DynamicQuantizeMatMul. Faster (per_token.py has the
  figures), but a text's scores move with its neighbours: 2 of 400 real texts changed label.

The embedding (EmbedLayerNormalization) stays fp32 by default: its tables quantized to int8 per
tensor (QEmbedLayerNormalization) were the largest INT8 error on the trained fixture. Per-token,
600 other-genre texts: top-1 agreement with PyTorch 99.17% -> 99.83%, max |dlogit| 0.130 -> 0.044;
1,000 titles: max |dlogit| 0.102 -> 0.053 (benchmarks/invariance.py). It costs file size (the
21128 x 768 word table is 65 MB in fp32, 16 MB in int8: model.int8.onnx of BERT-14 is 155 MB
against 105 MB) and no time (a lookup either way; make bench).
`keep_embedding_fp32=False` (`--int8-embedding int8`) gives the smaller file.

Kept in fp32, deliberately:
- the head (pooler dense + tanh, classifier): two (B, hidden) products, about 0.01% of the
  work at sequence 128, but their error lands on the logits unattenuated and flips close labels;
- SkipLayerNormalization and BiasGelu: ONNX Runtime has no integer kernels for them. Both are
  then unfused into forms its CPU kernels run faster: Sum + LayerNormalization
  (layer_norm_cpu.py) and the bias on the integer product + Gelu (gelu_cpu.py);
- the embedding, unless `keep_embedding_fp32=False` (above);
- any layer the caller lists in `keep_fp32_layers` (the accuracy-driven fallback's choice).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

from bert14.quantize.gelu_cpu import split_bias_gelu
from bert14.quantize.isa import WeightFormat, choose_weight_format
from bert14.quantize.layer_norm_cpu import split_skip_layer_norm
from bert14.quantize.layers import layer_map
from bert14.quantize.per_token import ZERO_POINT, quantize_per_token

# Ops that dynamic quantization turns into integer kernels in a fused BERT graph.
QUANTIZED_OP_TYPES = ["Attention", "MatMul", "EmbedLayerNormalization", "Gather"]
ACTIVATIONS = ("per_token", "per_tensor")


@dataclass
class DynamicOptions:
    per_channel: bool = True  # one scale per output channel: max |dprob| 0.029 vs 0.032 per tensor (docs/numbers.md)
    reduce_range: bool | None = None  # None: decided from the CPU flags (isa.py)
    keep_fp32_layers: list[int] = field(default_factory=list)
    keep_embedding_fp32: bool = True  # int8 tables were the largest INT8 error (module docstring)
    quantize_head: bool = False
    split_layer_norm: bool = True  # layer_norm_cpu.py: ORT's CPU SkipLayerNormalization kernel is slow
    split_bias_gelu: bool = True  # gelu_cpu.py: the bias rides the integer GEMM, Gelu beats BiasGelu (per_tensor)
    # per_token (the default): each row its own scale, so a text's scores do not depend on its batch
    # (per_token.py); per_tensor: one scale over the whole batch, padding included (faster, not batch-invariant)
    activations: str = "per_token"

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"activations: expected one of {ACTIVATIONS}, got {self.activations!r}")


@dataclass
class QuantizeResult:
    recipe: dict[str, object]
    kept_fp32: list[str]


@contextlib.contextmanager
def named_copy(model: onnx.ModelProto) -> Iterator[Path]:
    """The model saved with the node names layer_map gave it (quantization selects nodes by
    name), with ONNX Runtime's quantizers quieted: they log a root-logger WARNING on every call
    advising its quant_pre_process (shape inference + graph optimization), which the fused graph
    has already been through."""
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "named.onnx"
        onnx.save(model, str(path))
        del model  # the caller drops its reference too: only the file stays while quantizing
        root.setLevel(logging.ERROR)
        try:
            yield path
        finally:
            root.setLevel(level)


def quantize_dynamic_int8(
    source: Path, target: Path, options: DynamicOptions, cpu_flags: dict[str, bool]
) -> QuantizeResult:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    mapping = layer_map(model)
    excluded: list[str] = []
    kept: list[str] = []
    if not options.quantize_head:
        excluded += mapping.head
        kept.append("head (pooler, classifier)")
    if options.keep_embedding_fp32:
        excluded += mapping.embedding
        kept.append("embedding")
    for index in sorted(set(options.keep_fp32_layers)):
        if not 0 <= index < len(mapping.layers):
            raise ValueError(f"keep_fp32_layers: layer {index} does not exist (0..{len(mapping.layers) - 1})")
        excluded += mapping.layers[index]
        kept.append(f"layer {index}")
    # quantize_dynamic first rewrites each Gemm as "<name>_MatMul" + "<name>_Add"; exclude those too.
    excluded += [f"{name}_MatMul" for name in excluded]
    if options.reduce_range is None:
        fmt = choose_weight_format(cpu_flags)
    else:
        fmt = WeightFormat(options.reduce_range, "set by the caller")
    per_token = options.activations == "per_token"
    with named_copy(model) as named:
        del model
        quantize_dynamic(
            str(named),
            str(target),
            # per_token: ONNX Runtime's quantizer makes QEmbedLayerNormalization only (fixed tables)
            op_types_to_quantize=["EmbedLayerNormalization"] if per_token else QUANTIZED_OP_TYPES,
            per_channel=options.per_channel,
            reduce_range=fmt.reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"MatMulConstBOnly": True},
        )
    split = gelu = 0
    if per_token:
        quantized = onnx.load(str(target))
        rewritten = quantize_per_token(quantized, mapping, set(excluded), fmt.reduce_range, options.per_channel)
        split = split_skip_layer_norm(quantized, bias_in_sum=True) if options.split_layer_norm else 0
        onnx.save(quantized, str(target))
    elif options.split_layer_norm or options.split_bias_gelu:
        quantized = onnx.load(str(target))
        split = split_skip_layer_norm(quantized) if options.split_layer_norm else 0
        gelu = split_bias_gelu(quantized) if options.split_bias_gelu else 0
        onnx.save(quantized, str(target))
    recipe = {
        "method": "dynamic",
        "layer_norm": "Sum + LayerNormalization" if split else "SkipLayerNormalization",
        "gelu": "Sum(bias) + Gelu" if per_token else "bias in the integer GEMM + Gelu" if gelu else "BiasGelu",
        "weights": "int8 per-channel" if options.per_channel else "int8 per-tensor",
        "activations": (
            f"uint8 around {ZERO_POINT}, one symmetric scale per token row, quantized at run time (batch-invariant)"
            if per_token else "uint8, per tensor, quantized at run time"
        ),
        **({"per_token": asdict(rewritten)} if per_token else {}),
        "reduce_range": fmt.reduce_range,
        "weight_format_reason": fmt.reason,
        "quantized_op_types": QUANTIZED_OP_TYPES,
        "layers": len(mapping.layers),
    }
    return QuantizeResult(recipe, kept)
