"""The fp16 variant of the fused graph, for the CUDA provider.

Weights and compute in fp16; the graph's inputs and outputs stay as they are (int64 ids, fp32
logits) so callers feed both variants the same arrays. What stays fp32 inside is ONNX Runtime's
choice per kernel: its CUDA SkipLayerNormalization and EmbedLayerNormalization accumulate the
mean and variance in fp32, and its Attention kernels accumulate the softmax in fp32, so nothing
needs to be kept in fp32 by hand. The conversion is ONNX Runtime's own (onnxruntime.transformers
.float16), which knows the contrib ops' fp16 type constraints.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16


def convert_fp16(source: Path, target: Path) -> None:
    model = onnx.load(str(source))
    # disable_shape_infer: ONNX's inference does not know the contrib ops and would only warn.
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    onnx.save(converted, str(target))
