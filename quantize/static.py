"""Static INT8 (QDQ) with calibration on real inputs, for comparison with the dynamic default.

Activation ranges are measured once on calibration texts (MinMax, Percentile or Entropy, ONNX
Runtime's calibrators) instead of at every run, and the graph gets QuantizeLinear/DequantizeLinear
pairs that ONNX Runtime fuses into integer kernels when the session starts. Weights are int8, per
tensor or per channel; the head stays fp32 as in the dynamic recipe.

What it cannot do on the fused graph: ONNX Runtime's static quantizer has no rule for the fused
Attention op, so attention stays fp32 (QDQ only around the MatMuls), which is why it measured
slower than dynamic quantization (whose Attention becomes QAttention); see docs/numbers.md. The
calibration batches are padded to one length: the Percentile and Entropy calibrators stack every
batch's activations and need equal shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from bert14.quantize.dynamic import QuantizeResult, named_copy
from bert14.quantize.isa import choose_weight_format
from bert14.quantize.layers import layer_map

CALIBRATORS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class StaticOptions:
    calibrate: str = "minmax"  # minmax | percentile | entropy
    per_channel: bool = True
    percentile: float = 99.999


def quantize_static_qdq(
    source: Path,
    target: Path,
    calibration: list[dict[str, np.ndarray]],
    options: StaticOptions,
    cpu_flags: dict[str, bool],
) -> QuantizeResult:
    """`calibration`: feeds of equal shape (B, S) drawn from real text."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    if options.calibrate not in CALIBRATORS:
        raise ValueError(f"calibrate: expected one of {CALIBRATORS}, got {options.calibrate!r}")
    if not calibration:
        raise ValueError("calibration: expected at least one batch of real inputs")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[options.calibrate]

    model = onnx.load(str(source))
    names = [value.name for value in model.graph.input]  # the family's inputs (bert14/family.py)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{name: feed[name] for name in names} for feed in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    mapping = layer_map(model)
    excluded = mapping.head + [f"{name}_MatMul" for name in mapping.head]
    fmt = choose_weight_format(cpu_flags)
    extra: dict[str, object] = {"CalibPercentile": options.percentile} if options.calibrate == "percentile" else {}
    with named_copy(model) as named:
        del model
        ort_quantize_static(
            str(named),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=options.per_channel,
            reduce_range=fmt.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=method,
            extra_options=extra,
        )
    recipe = {
        "method": "static (QDQ)",
        "calibrate": options.calibrate,
        "calibration_batches": len(calibration),
        "weights": "int8 per-channel" if options.per_channel else "int8 per-tensor",
        "activations": "uint8, per tensor, ranges from calibration",
        "reduce_range": fmt.reduce_range,
        "weight_format_reason": fmt.reason,
        "layers": len(mapping.layers),
    }
    return QuantizeResult(recipe, ["head (pooler, classifier)", "attention (no static rule for the fused op)"])


def calibration_batches(
    tokenizer, texts: list[str], max_length: int, length: int = 128, batch: int = 16
) -> list[dict[str, np.ndarray]]:
    """Real texts as equal-shape batches (B, length), right-padded or cut."""
    from bert14.encode import encode

    encoded = encode(tokenizer, texts, None, min(length, max_length))
    out = []
    for start in range(0, len(encoded), batch):
        rows = encoded[start : start + batch]
        ids = np.zeros((len(rows), length), dtype=np.int64)  # (B, S)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, row in enumerate(rows):
            n = min(len(row.ids), length)
            ids[i, :n], mask[i, :n], types[i, :n] = row.ids[:n], 1, row.type_ids[:n]
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    return out
