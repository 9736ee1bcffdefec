"""Sequence-length mask: Attention reads EmbedLayerNormalization's 1-D mask_index, not the 2-D mask.

    attention_mask ─Cast(int32)─┬──────────────────────────── Attention.mask_index (B, S)   before
                                └─ EmbedLayerNormalization.mask ─> mask_index (B,) ─ Attention   after

ONNX Runtime's CUDA provider runs its fused attention kernels (flash / memory-efficient / TRT
fused MHA) only for a 1-D mask of sequence lengths or no mask; a raw 2-D mask sends it to the
unfused path. The 1-D form says "the first n tokens are real", so it is equivalent to the 2-D mask
for right padding only: left-padded or holed masks would be read wrongly. The artifacts keep the
2-D form; this pass makes a variant for callers that guarantee right padding (bert14's runtime
always pads on the right). Refused: a graph without one EmbedLayerNormalization, or without fused
Attention nodes reading the shared 2-D mask.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx_ir as ir

from bert14.errors import FusionError


def use_sequence_lengths(model: ir.Model) -> int:
    """Rewire every Attention to the 1-D mask; returns how many were rewired."""
    embed = [n for n in model.graph if n.op_type == "EmbedLayerNormalization"]
    attention = [n for n in model.graph if n.op_type == "Attention" and len(n.inputs) > 3 and n.inputs[3] is not None]
    if len(embed) != 1 or not attention:
        raise FusionError("sequence-length mask: expected one EmbedLayerNormalization and fused Attention with a mask")
    mask = attention[0].inputs[3]
    if any(node.inputs[3] is not mask for node in attention):
        raise FusionError("sequence-length mask: the Attention nodes do not share one 2-D mask")
    node = embed[0]
    inputs = list(node.inputs) + [None] * (8 - len(node.inputs))
    inputs[7] = mask
    replacement = ir.node(
        "EmbedLayerNormalization",
        inputs,
        {name: attr for name, attr in node.attributes.items()},
        domain=node.domain,
        num_outputs=2,
        name=node.name,
    )
    model.graph.insert_before(node, replacement)
    for old, new in zip(node.outputs, replacement.outputs, strict=False):
        new.shape, new.type = old.shape, old.type
        old.replace_all_uses_with(new)
    model.graph.remove(node, safe=True)
    lengths = replacement.outputs[1]
    lengths.name = "sequence_lengths"
    for attn in attention:
        attn.replace_input_with(3, lengths)
    return len(attention)


def write_seqlen_fp16(fused: Path, target: Path) -> None:
    """The fp16 file with sequence-length attention, built from a fused fp32 file."""
    from bert14.optimize.fp16 import convert_fp16
    from bert14.optimize.pipeline import run_pass, save

    model = ir.load(str(fused))
    run_pass(model, "mask_index")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "seqlen.onnx"
        save(model, fp32)
        del model
        convert_fp16(fp32, target)
