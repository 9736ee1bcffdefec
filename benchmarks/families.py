"""The BERT family at base size: bert14's pipeline against ONNX Runtime's optimizer, family by family.

For each family (BERT-14 first, the yardstick the issue names), one process, the same 2 threads:
  1. a base-size checkpoint with seeded weights, written as save_pretrained writes it
     (export/families.py); RoBERTa's BPE and XLM-R's Unigram trained on the THUCNews train titles;
  2. `bert14 export --model DIR --no-openvino` (dynamo, sdpa; no CUDA-only seqlen file): its fusion counts
     and every gate (fp32, fused, fp16 on the CPU, ONNX Runtime INT8; OpenVINO's: train_families.py);
  3. the public recipe on the same checkpoint: TorchScript export of the eager attention, ONNX Runtime's
     transformer optimizer with model_type="bert", quantize_dynamic; what it fused; and bert14's
     optimizer on that same TorchScript/eager export (the other exporter and attention);
  4. the runtime's tokenizer against transformers' AutoTokenizer on the checkpoint, id for id, on the
     1,000 test titles and the 70 articles;
  5. latency at 1 x 128 and 8 x 128, bert14 INT8 beside the recipe's INT8, interleaved, medians;
  6. top-1 agreement with PyTorch fp32 on the 1,000 THUCNews test titles (bert14 INT8, the recipe's
     INT8), with the share of near ties (PyTorch's top-2 margin under 0.1), and bert14 fp32's largest
     |dlogit| on the 70 THUCNews articles, most of them past the 512-token limit (truncated).
Seeded weights: the agreement says how far INT8 moves an untrained encoder's logits, not accuracy.

    .venv/bin/python benchmarks/families.py [--families bert,roberta,...] [--json docs/results/families.json]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import FAMILIES, THREADS, chosen_families, interleaved, public_recipe, session, write_report
from data import articles, titles

SHAPES = ((1, 128), (8, 128))
NEAR_TIE = 0.1  # a PyTorch top-2 margin under this is a near tie: INT8 may flip it without being wrong
TOKENIZER_VOCAB = 30000  # trained tokenizers' cap; THUCNews titles hold fewer distinct pieces anyway
# A quick run of the script itself (--smoke): every family at 2 layers of 64.
SMOKE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")


def _ops(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in FUSED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _feeds(names: tuple[str, ...], batch: int, sequence: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "input_ids": rng.integers(5, vocab, size=(batch, sequence), dtype=np.int64),
        "attention_mask": np.ones((batch, sequence), dtype=np.int64),
        "token_type_ids": np.zeros((batch, sequence), dtype=np.int64),
    }
    return {name: arrays[name] for name in names}


def _logits(run, batches, names) -> np.ndarray:  # noqa: ANN001
    rows = [(batch.indices, run(batch.feeds(names))) for batch in batches]
    out = np.zeros((sum(len(i) for i, _ in rows), rows[0][1].shape[1]), np.float32)  # (N, C)
    for indices, logits in rows:
        out[indices] = logits
    return out


def _agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    top2 = np.sort(reference, axis=1)[:, -2:]
    near = (top2[:, 1] - top2[:, 0]) < NEAR_TIE
    same = reference.argmax(1) == candidate.argmax(1)
    return {
        "top1_agreement": round(float(same.mean()), 4),
        "top1_agreement_without_near_ties": round(float(same[~near].mean()), 4) if (~near).any() else None,
        "near_ties": round(float(near.mean()), 4),
        "max_abs_logit_diff": round(float(np.abs(reference - candidate).max()), 4),
        "mean_abs_logit_diff": round(float(np.abs(reference - candidate).mean()), 5),
    }


def one_family(model_type: str, work: Path, rounds: int, smoke: bool = False) -> dict[str, object]:
    import torch
    from transformers import AutoTokenizer

    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.encode import buckets, encode
    from bert14.errors import FusionError
    from bert14.export.families import BASE_SHAPES, seeded_checkpoint
    from bert14.export.model import BERT14_LABELS, load_checkpoint
    from bert14.family import FAMILIES
    from bert14.optimize.pipeline import OptimizeOptions, optimize_file
    from bert14.tokenizer import load_tokenizer

    family = FAMILIES[model_type]
    train = [text for _, text in titles("train")]
    started = time.perf_counter()
    shape = BASE_SHAPES[model_type] | (SMOKE if smoke else {})
    checkpoint = seeded_checkpoint(model_type, work / "checkpoint", shape, list(BERT14_LABELS), train,
                                   tokenizer_vocab=TOKENIZER_VOCAB)  # fmt: skip
    print(f"{model_type}: checkpoint in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    started = time.perf_counter()
    artifact = work / "artifact"
    # No OpenVINO build here (minutes per family at this size): train_families.py builds and gates it for
    # each family, on trained models where its calibration means something.
    options = ExportOptions(model_dir=checkpoint, out_dir=artifact, fp16_seqlen=False, openvino=False)
    report = export_artifact(options)
    export_seconds = time.perf_counter() - started
    print(f"{model_type}: bert14 export in {export_seconds:.0f} s", file=sys.stderr, flush=True)
    manifest = report.manifest.raw
    source = load_checkpoint(checkpoint, "sdpa")
    shape = source.shape
    eager = load_checkpoint(checkpoint, "eager")
    recipe_fp32, recipe_int8 = public_recipe(eager.model, work, shape["num_attention_heads"], shape["hidden_size"])
    del eager
    gc.collect()
    # bert14's optimizer on the recipe's TorchScript export of the eager attention: the other exporter.
    try:
        other = optimize_file(work / "recipe.onnx", work / "torchscript.opt.onnx", OptimizeOptions(family=family))
        torchscript = {"fused": other.counts, "complete": not other.shortfalls()}
    except FusionError as exc:
        torchscript = {"fused": {}, "complete": False, "why": str(exc).splitlines()[:3]}
    tokenizer, settings = load_tokenizer(artifact, family)
    reference_tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    sample = [text for _, text in titles("test")] + [text for _, text in articles()]
    ours = [e.ids for e in encode(tokenizer, sample, None, source.max_tokens)]
    theirs = reference_tokenizer(sample, truncation=True, max_length=source.max_tokens)["input_ids"]
    identical = sum(a == b for a, b in zip(ours, theirs, strict=True))
    names = family.input_names
    sessions = {
        "bert14 int8": session(str(artifact / "model.int8.onnx")),
        "public recipe int8": session(str(recipe_int8)),
    }
    vocab = tokenizer.get_vocab_size()
    latency = {}
    for batch, sequence in SHAPES:
        feeds = _feeds(names, batch, sequence, vocab)
        runners = {name: (lambda s=s, f=feeds: s.run(None, f)) for name, s in sessions.items()}
        timings = interleaved(runners, rounds)
        latency[f"{batch}x{sequence}"] = {n: round(t.median_ms, 2) for n, t in timings.items()}
    print(f"{model_type}: timed", file=sys.stderr, flush=True)

    pad = tokenizer.token_to_id(settings.pad_token) or 0
    texts = [text for _, text in titles("test")]
    batches = buckets(encode(tokenizer, texts, None, source.max_tokens), 32, 8192, pad)

    def torch_run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return source.model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()

    reference = _logits(torch_run, batches, names)
    agreement = {
        name: _agreement(reference, _logits(lambda f, s=s: s.run(None, f)[0], batches, names))
        for name, s in sessions.items()
    }
    long = [text for _, text in articles()]
    long_batches = buckets(encode(tokenizer, long, None, source.max_tokens), 8, 4096, pad)
    fused = session(str(artifact / "model.opt.onnx"))
    long_diff = np.abs(_logits(torch_run, long_batches, names) - _logits(lambda f: fused.run(None, f)[0],
                                                                          long_batches, names)).max()  # fmt: skip
    truncated = sum(e.truncated for e in encode(tokenizer, long, None, source.max_tokens))
    validation = {
        key: entry[field]["max_abs_logit_diff"]
        for key, entry in manifest["artifacts"].items()
        for field in ("validation", "validation_cpu")
        if field in entry
    }
    return {
        "architecture": family.architecture,
        "shape": {**shape, "max_tokens": source.max_tokens},
        "tokenizer": family.tokenizer,
        "tokenizer_vocab": vocab,
        "inputs": list(names),
        "export_seconds": round(export_seconds, 1),
        "bert14_fusions": manifest["fusions"]["counts"],
        "bert14_expected": manifest["fusions"]["expected"],
        "recipe_fusions": _ops(recipe_fp32),
        "torchscript_eager": torchscript,
        "tokenizer_identical": {"texts": len(sample), "identical": identical},
        "validation_max_abs_logit_diff": validation,
        "artifacts": sorted(manifest["artifacts"]),
        "latency_ms": latency,
        "int8_vs_recipe": {s: round(v["bert14 int8"] / v["public recipe int8"], 3) for s, v in latency.items()},
        "agreement": agreement,
        "articles": {
            "texts": len(long),
            "truncated": int(truncated),
            "fp32_fused_max_abs_logit_diff": float(long_diff),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path, default=Path("bench-results/families.json"))
    parser.add_argument("--smoke", action="store_true", help="2 layers of 64: checks the script, measures nothing")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(THREADS)
    wanted = chosen_families(args.families)
    results = {}
    for model_type in wanted:
        with tempfile.TemporaryDirectory(prefix=f"bert14-{model_type}-") as tmp:
            results[model_type] = one_family(model_type, Path(tmp), args.rounds, args.smoke)
        gc.collect()
        line = results[model_type]
        print(f"{model_type}: int8 vs recipe {line['int8_vs_recipe']}, agreement "
              f"{line['agreement']['bert14 int8']['top1_agreement']}", file=sys.stderr, flush=True)  # fmt: skip
    write_report(args.json, {"threads": THREADS, "rounds": args.rounds, "near_tie": NEAR_TIE, "smoke": args.smoke,
                             "families": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
