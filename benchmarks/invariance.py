"""One text, one answer: does a text's score depend on what it is batched with? And what INT8 still agrees with.

The trained fixture (../shared/models/bert14-small-thucnews) exported with the defaults and `--calibration`
of 300 training titles; 400 real texts (200 THUCNews test titles and 200 reviews and People's Daily
paragraphs, some far past 512 tokens, seeded picks); each text classified alone (`predict([t])`), then all in
one `predict()` call, then in shuffled groups of 8 (what the micro-batching server makes of concurrent
clients). Per engine and precision: rows bit-identical to "alone" in both batched runs, label flips, the
largest |probability| move. The per-tensor INT8 that was the default (`--int8-activations per_tensor`) is
the "before" row.

Fidelity: top-1 agreement with PyTorch fp32 and max |dlogit| of each INT8 on the 1,000 test titles and the
600 other-genre texts (benchmarks/data.py), as the runtime batches them.

    .venv/bin/python benchmarks/invariance.py [--json docs/results/invariance.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import THREADS, measured
from data import TRAINED_MODEL, calibration_titles, other_genres, require, titles

SEED = 26
PER_SET = 200
GROUP = 8
PER_TENSOR = "ONNX Runtime INT8, per-tensor (before)"


def texts_400() -> list[str]:
    rng = np.random.default_rng(SEED)
    test = [text for _, text in titles("test")]
    other = other_genres()
    return [test[i] for i in rng.choice(len(test), PER_SET, replace=False)] + [
        other[i] for i in rng.choice(len(other), PER_SET, replace=False)
    ]


def export_fixture(work: Path) -> tuple[Path, Path]:
    """(the fixture's artifact, a copy whose model.int8.onnx is the per-tensor INT8)."""
    from bert14.artifact import INT8_FILE, cpu_flags
    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.quantize.dynamic import DynamicOptions, quantize_dynamic_int8

    calibration = work / "calibration.txt"
    calibration.write_text("\n".join(calibration_titles()), encoding="utf-8")
    artifact = work / "fixture"
    print("exporting the trained fixture ...", file=sys.stderr, flush=True)
    export_artifact(ExportOptions(model_dir=require(TRAINED_MODEL), out_dir=artifact, calibration_texts=calibration))
    before = work / "per_tensor"
    shutil.copytree(artifact, before)
    options = DynamicOptions(activations="per_tensor", keep_embedding_fp32=False)  # the old default, exactly
    quantize_dynamic_int8(artifact / "model.opt.onnx", before / INT8_FILE, options, cpu_flags())
    return artifact, before


def classifiers(artifact: Path, before: Path) -> dict[str, object]:
    from bert14.runtime import Classifier

    cpu = {"provider": "cpu", "threads": THREADS}
    return {
        "ONNX Runtime fp32": Classifier.load(artifact, precision="fp32", **cpu),
        "ONNX Runtime INT8 (default)": Classifier.load(artifact, precision="int8", **cpu),
        PER_TENSOR: Classifier.load(before, precision="int8", verify=False, **cpu),  # its INT8 file differs
        "OpenVINO INT8": Classifier.load(artifact, engine="openvino", **cpu),
    }


def invariance(clf, texts: list[str]) -> dict[str, object]:
    from bert14.head import scores

    alone = np.concatenate([clf.logits([text]) for text in texts])  # (N, C)
    one_call = clf.logits(texts)  # (N, C)
    order = np.random.default_rng(SEED).permutation(len(texts))
    groups = np.zeros_like(alone)
    for start in range(0, len(texts), GROUP):
        rows = order[start : start + GROUP]
        groups[rows] = clf.logits([texts[i] for i in rows])
    identical = (one_call == alone).all(1) & (groups == alone).all(1)  # (N,)
    flipped = (one_call.argmax(1) != alone.argmax(1)) | (groups.argmax(1) != alone.argmax(1))
    p = scores(alone.astype(np.float64), clf.score_function)
    moved = max(np.abs(scores(got.astype(np.float64), clf.score_function) - p).max() for got in (one_call, groups))
    return {
        "texts": len(texts),
        "bit_identical": int(identical.sum()),
        "label_flips": int(flipped.sum()),
        "max_abs_prob_diff": float(moved),
        "max_abs_logit_diff": float(max(np.abs(g - alone).max() for g in (one_call, groups))),
    }


def fidelity(artifact: Path, engines: dict[str, object]) -> dict[str, dict[str, object]]:
    from bert14.artifact import read_manifest
    from bert14.check.compare import agreement
    from bert14.check.reference import source_of, torch_logits
    from bert14.encode import buckets

    model = source_of(read_manifest(artifact)).model
    helper = next(iter(engines.values()))
    out: dict[str, dict[str, object]] = {}
    for name, texts in (("titles", [t for _, t in titles("test")]), ("other genres", other_genres())):
        reference = np.zeros((len(texts), len(helper.labels)), dtype=np.float32)  # (N, C)
        for batch in buckets(helper.encode(texts), 16, 4096):
            reference[batch.indices] = torch_logits(model, batch)
        out[name] = {"texts": len(texts)}
        for engine, clf in engines.items():
            if "INT8" not in engine:
                continue
            a = agreement(reference, clf.logits(texts), helper.score_function)
            out[name][engine] = {
                "top1_agreement": a.agreement,
                "flips": a.flips,
                "max_abs_logit_diff": a.max_abs_logit_diff,
                "max_abs_prob_diff": a.max_prob_diff,
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    texts = texts_400()
    with tempfile.TemporaryDirectory() as tmp:
        artifact, before = export_fixture(Path(tmp))
        engines = classifiers(artifact, before)
        report: dict[str, object] = {"measured": measured(), "threads": THREADS, "group": GROUP}
        report["invariance"] = {name: invariance(clf, texts) for name, clf in engines.items()}
        report["fidelity"] = fidelity(artifact, engines)
    print(f"{'engine / precision':<40} {'bit-identical':>13} {'flips':>5} {'max |dprob|':>12}")
    for name, row in report["invariance"].items():  # type: ignore[union-attr]
        print(f"{name:<40} {row['bit_identical']:>9}/{row['texts']} {row['label_flips']:>5} "
              f"{row['max_abs_prob_diff']:>12.3g}")  # fmt: skip
    for name, part in report["fidelity"].items():  # type: ignore[union-attr]
        for engine, row in part.items():
            if isinstance(row, dict):
                print(f"{name:<13} {engine:<40} top-1 {row['top1_agreement']:.4f} "
                      f"max |dlogit| {row['max_abs_logit_diff']:.3f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
