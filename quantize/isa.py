"""Which INT8 weight format the CPU's instruction set wants.

ONNX Runtime's dynamic quantization feeds its integer GEMMs uint8 activations and int8 weights
(u8s8). On CPUs with VNNI (avx512_vnni, avx_vnni) or AMX the dot products accumulate straight into
32 bits, so full-range int8 weights are exact. On AVX2-only CPUs the u8s8 kernel multiplies pairs
with vpmaddubsw, whose 16-bit intermediate sum saturates when two large products add up (255 x 127
x 2 > 32767); ONNX Runtime's documented remedy is 7-bit weights (`reduce_range`), which keep every
pair sum in range at the cost of one bit of weight precision.
"""

from __future__ import annotations

from dataclasses import dataclass

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class WeightFormat:
    reduce_range: bool
    reason: str


def choose_weight_format(flags: dict[str, bool]) -> WeightFormat:
    present = [flag for flag in VNNI_FLAGS if flags.get(flag)]
    if present:
        return WeightFormat(False, f"full-range int8 weights: the CPU has {', '.join(present)} (no u8s8 saturation)")
    if flags.get("avx2"):
        return WeightFormat(True, "7-bit weights (reduce_range): AVX2 without VNNI saturates u8s8 pair sums")
    return WeightFormat(False, "full-range int8 weights: no x86 AVX2 kernel in play (flags unknown or not x86)")
