"""What each of the INT8 build's CPU rewrites is worth: the model quantized with each switched off.

Quantizes ARTIFACT/model.opt.onnx four ways with `quantize_dynamic_int8` and times them side by
side (2 threads, spinning off, interleaved rounds, medians) at batch 1 x seq 128, 1 x 512 and
8 x 128:

    default                both rewrites (what `make export` writes)
    BiasGelu kept          without quantize/gelu_cpu.py (the FFN bias stays in BiasGelu)
    SkipLayerNorm kept     without quantize/layer_norm_cpu.py
    neither                the plain quantize_dynamic output of the fused graph

It prints the medians, each variant's time over the default's, and the largest logit difference
from the default at 1 x 128 (the rewrites are exact, so only float rounding should show).

    .venv/bin/python benchmarks/studies/ablate_int8.py artifacts/bert14 [--rounds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, data.py

from common import bert_feeds, interleaved, session  # noqa: E402

SHAPES = ((1, 128), (1, 512), (8, 128))
VARIANTS = {
    "default": {},
    "BiasGelu kept": {"split_bias_gelu": False},
    "SkipLayerNorm kept": {"split_layer_norm": False},
    "neither": {"split_bias_gelu": False, "split_layer_norm": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from bert14.artifact import cpu_flags
    from bert14.quantize.dynamic import DynamicOptions, quantize_dynamic_int8

    source = args.artifact / "model.opt.onnx"
    if not source.is_file():
        parser.error(f"{source} not found: expected an artifact directory written by `bert14 export`")
    workdir = Path(tempfile.mkdtemp(prefix="ablate-"))
    sessions = {}
    for name, switches in VARIANTS.items():
        path = workdir / f"{len(sessions)}.onnx"
        print(f"quantizing: {name}", flush=True)
        quantize_dynamic_int8(source, path, DynamicOptions(**switches), cpu_flags())
        sessions[name] = session(str(path))

    logits = {name: s.run(["logits"], bert_feeds(1, 128))[0] for name, s in sessions.items()}
    print(f"\n{'ms (median)':<20}" + "".join(f"{b}x{s:<9}" for b, s in SHAPES) + "vs default              max |dlogit|")
    table: dict[str, list[float]] = {name: [] for name in sessions}
    for batch, sequence in SHAPES:
        feeds = bert_feeds(batch, sequence)
        runners = {name: (lambda s=s, f=feeds: s.run(None, f)) for name, s in sessions.items()}
        for name, timing in interleaved(runners, args.rounds).items():
            table[name].append(timing.median_ms)
    for name, times in table.items():
        ratios = " / ".join(f"{t / d:.3f}" for t, d in zip(times, table["default"], strict=True))
        diff = float(np.abs(logits[name] - logits["default"]).max())
        print(f"{name:<20}" + "".join(f"{t:<12.1f}" for t in times) + f"{ratios:<24}{diff:.1e}")


if __name__ == "__main__":
    main()
