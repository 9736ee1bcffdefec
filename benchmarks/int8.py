"""INT8 on the CPU: how often its labels agree with PyTorch fp32 on real text (speed is `make bench`).

Accuracy (the trained fixture ../shared/models/bert14-small-thucnews; random weights have
near-tied logits that say nothing about INT8): top-1 agreement of each INT8 model with the PyTorch
fp32 labels on the 1,000 THUCNews test titles and the 70 articles (cut to 512 tokens), and the max
and mean |probability difference|. Compared: bert14's model.int8.onnx (from `bert14 export`) and
the public recipe (TorchScript/eager export + ONNX Runtime's optimizer + quantize_dynamic).

Latency is not timed here: `make bench` (benchmarks/bench.py) times the same INT8 files beside
PyTorch and the recipe at the same shapes, in one interleaved run.

    .venv/bin/python benchmarks/int8.py [--per-tensor | --target-agreement A | --static M] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import bert_feeds, interleaved, measured, public_recipe, session
from data import TRAINED_MODEL, articles, require, titles

from bert14.artifact import read_manifest
from bert14.head import SOFTMAX

MAX_LENGTH = 512


def _batches(tokenizer, texts: list[str]):
    from bert14.encode import buckets, encode

    return buckets(encode(tokenizer, texts, None, MAX_LENGTH), max_batch=16, max_tokens=4096)


def _torch_logits(model, batches, count: int, labels: int) -> np.ndarray:
    from bert14.check.reference import torch_logits

    out = np.zeros((count, labels), dtype=np.float32)  # (N, C) in the texts' order
    for batch in batches:
        out[batch.indices] = torch_logits(model, batch)
    return out


def _onnx_logits(path: Path, batches, count: int, labels: int) -> np.ndarray:
    from bert14.check.runners import OrtRunner

    runner = OrtRunner(path, optimized=True, threads=2)  # as the runtime serves it
    out = np.zeros((count, labels), dtype=np.float32)  # (N, C)
    for batch in batches:
        out[batch.indices] = runner(batch)
    return out


def _agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    from bert14.check.compare import agreement

    measured = agreement(reference, candidate, SOFTMAX)  # the fixture is single-label
    return {
        "top1_agreement": measured.agreement,
        "max_abs_logit_diff": measured.max_abs_logit_diff,
        "flips": measured.flips,
        "max_abs_prob_diff": measured.max_prob_diff,
        "mean_abs_prob_diff": measured.mean_prob_diff,
    }


def accuracy(workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.export.model import load_checkpoint
    from bert14.quantize.dynamic import DynamicOptions
    from bert14.quantize.fallback import FallbackOptions
    from bert14.tokenizer import load_tokenizer

    fixture = require(TRAINED_MODEL)
    artifact = workdir / "fixture"
    options = ExportOptions(model_dir=fixture, out_dir=artifact, int8=DynamicOptions(per_channel=not args.per_tensor))

    if args.target_agreement is not None or args.max_prob_diff is not None:
        # Evaluate on training titles, never on the test titles the table reports.
        eval_texts = workdir / "eval.txt"
        eval_texts.write_text("\n".join(text for _, text in titles("train")[: args.eval_rows]), encoding="utf-8")
        options.int8_eval_texts = eval_texts
        options.int8_fallback = FallbackOptions(args.target_agreement or 0.0, args.max_prob_diff)
    export_artifact(options)
    source = load_checkpoint(fixture, "eager")
    config = source.config
    _, recipe_int8 = public_recipe(source.model, workdir, config.num_attention_heads, config.hidden_size)
    tokenizer, _ = load_tokenizer(artifact)
    models = {"bert14_int8": artifact / "model.int8.onnx", "recipe_int8": recipe_int8}
    if args.static is not None:
        # Static QDQ beside the dynamic default, calibrated on 512 training titles.
        from bert14.artifact import cpu_flags
        from bert14.quantize.static import StaticOptions, calibration_batches, quantize_static_qdq

        texts = [text for _, text in titles("train")[:512]]
        batches = calibration_batches(tokenizer, texts, config.max_position_embeddings)
        models["static_int8"] = workdir / "static.onnx"
        quantize_static_qdq(
            artifact / "model.opt.onnx",
            models["static_int8"],
            batches,
            StaticOptions(args.static, not args.per_tensor),
            cpu_flags(),
        )
    result: dict[str, object] = {}
    for name, rows in (("titles", titles("test")), ("articles", articles())):
        texts = [text for _, text in rows]
        batches = _batches(tokenizer, texts)
        labels = config.num_labels
        reference = _torch_logits(source.model, batches, len(texts), labels)
        gold = np.array([source.labels.index(label) for label, _ in rows])
        result[name] = {
            "texts": len(texts),
            "pytorch_fp32_accuracy_vs_gold": float((reference.argmax(-1) == gold).mean()),
            **{
                model: _agreement(reference, _onnx_logits(path, batches, len(texts), labels))
                for model, path in models.items()
            },
        }
    manifest = read_manifest(artifact)
    result["bert14_recipe"] = manifest.artifacts["int8"]["recipe"]
    result["bert14_kept_fp32"] = manifest.artifacts["int8"]["kept_fp32"]
    result["bert14_size_vs_fp32"] = manifest.artifacts["int8"]["size_vs_fp32"]
    result["bert14_fallback"] = manifest.artifacts["int8"].get("fallback")
    fused_int8 = {model: session(str(path)) for model, path in models.items()}
    fused_int8["bert14_fp32_fused"] = session(str(artifact / "model.opt.onnx"))
    feeds = bert_feeds(1, 128)
    timings = interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in fused_int8.items()}, 30)
    result["fixture_latency_ms_1x128"] = {k: round(t.median_ms, 2) for k, t in timings.items()}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--per-tensor", action="store_true", help="bert14 INT8 with per-tensor weight scales")
    parser.add_argument("--target-agreement", type=float, help="bert14 INT8 with the accuracy-driven fallback")
    parser.add_argument("--max-prob-diff", type=float, help="fallback: also bound max |probability diff|")
    parser.add_argument("--eval-rows", type=int, default=2000, help="training titles the fallback measures on")
    parser.add_argument("--static", choices=("minmax", "percentile", "entropy"), help="bert14 INT8 as static QDQ")
    args = parser.parse_args()
    report: dict[str, object] = {"measured": measured()}
    with tempfile.TemporaryDirectory() as tmp:
        print("accuracy: exporting the trained fixture and the public recipe ...", file=sys.stderr, flush=True)
        report["accuracy"] = accuracy(Path(tmp), args)
    if "accuracy" in report:
        print(
            f"{'text set':<10} {'model':<12} {'top-1 agree':>11} {'flips':>5} {'max |dp|':>9} {'mean |dp|':>10}"
            f" {'max |dlogit|':>12}"
        )
        for name in ("titles", "articles"):
            part = report["accuracy"][name]  # type: ignore[index]
            for model in [m for m in part if m.endswith("_int8")]:
                a = part[model]
                print(
                    f"{name:<10} {model:<12} {a['top1_agreement']:>11.4f} {a['flips']:>5} "
                    f"{a['max_abs_prob_diff']:>9.4f} {a['mean_abs_prob_diff']:>10.5f} {a['max_abs_logit_diff']:>12.4f}"
                )
        acc = report["accuracy"]
        print(f"bert14 int8: fp32 kept {acc['bert14_kept_fp32']}, size {acc['bert14_size_vs_fp32']:.1%} of fp32")  # type: ignore[index]
        print(f"fixture latency 1x128: {acc['fixture_latency_ms_1x128']}")  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
