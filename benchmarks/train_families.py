"""INT8 agreement on trained models of every family: a small classifier of each, trained here.

Seeded weights make logits that barely depend on the text, so INT8's agreement with PyTorch on them
says little. For a figure that does, each family's small classifier (2 layers of 128, seeded
checkpoint from export/families.py, its own tokenizer) is trained from scratch on the 33,740
THUCNews train titles for EPOCHS epochs, saved as save_pretrained saves it, exported with
`bert14 export --model DIR --calibration 300-titles`, and measured on the 1,000 test titles:
accuracy of PyTorch fp32, bert14 INT8 (ONNX Runtime) and bert14 INT8 (OpenVINO), and top-1 agreement
of each INT8 with PyTorch. The export builds and gates ONNX Runtime's INT8; OpenVINO's is built as
`--calibration` builds it (300 train titles) and its export gate is recorded, not enforced, so that a
family whose OpenVINO INT8 the export would refuse still gets its figures (and the refusal is shown).

    .venv/bin/python benchmarks/train_families.py [--families ...] [--json docs/results/families_trained.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import FAMILIES, THREADS, chosen_families, write_report
from data import titles

SMALL = {"vocab_size": 30000, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 512, "positions": 512, "type_vocab_size": 2}  # fmt: skip
# What differs per family beyond SMALL (ELECTRA's narrower embeddings, ERNIE's task types).
EXTRA = {"roberta": {"type_vocab_size": 1}, "xlm-roberta": {"type_vocab_size": 1}, "distilbert": {},
         "electra": {"embedding_size": 64}, "ernie": {"use_task_id": True, "task_type_vocab_size": 3}}  # fmt: skip
EPOCHS = 1
BATCH = 64
TRAIN_TOKENS = 48  # titles are short: 48 tokens hold 99% of them
LEARNING_RATE = 5e-4
SEED = 14
CALIBRATION_TEXTS = 300


def _shape(model_type: str) -> dict:
    shape = {**SMALL, **EXTRA.get(model_type, {})}
    if model_type == "distilbert":
        shape.pop("type_vocab_size")
    return shape


def train(model_type: str, directory: Path, labels: list[str]) -> dict[str, float]:
    import torch

    from bert14.export.families import seeded_checkpoint
    from bert14.export.model import load_checkpoint

    rows = titles("train")
    texts = [text for _, text in rows]
    seeded_checkpoint(model_type, directory, _shape(model_type), labels, texts, seed=SEED)
    source = load_checkpoint(directory, "sdpa")
    family = source.family
    tokenizer = source.tokenizer()  # the checkpoint's, as the artifact will carry it
    tokenizer.enable_truncation(TRAIN_TOKENS)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(source.tokenizer_settings.pad_token) or 0)
    targets = torch.tensor([labels.index(label) for label, _ in rows])
    model = source.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    steps = EPOCHS * ((len(texts) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(SEED)
    started, losses = time.perf_counter(), []
    for _ in range(EPOCHS):
        order = torch.randperm(len(texts), generator=generator).tolist()
        for start in range(0, len(order), BATCH):
            chosen = order[start : start + BATCH]
            encodings = tokenizer.encode_batch([texts[i] for i in chosen])
            ids = torch.tensor([e.ids for e in encodings])  # (B, S)
            inputs = {"input_ids": ids, "attention_mask": torch.tensor([e.attention_mask for e in encodings])}
            if family.segments:
                inputs["token_type_ids"] = torch.zeros_like(ids)
            loss = torch.nn.functional.cross_entropy(model(**inputs).logits, targets[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    model.eval().save_pretrained(str(directory))
    return {
        "train_seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
    }


def openvino_int8(directory: Path, artifact: Path, work: Path, calibration: list[str]) -> tuple[Path, dict]:
    """OpenVINO INT8 of the artifact's fused graph, as `bert14 export --calibration` builds it, and its
    export gate (the same suite and tolerance) recorded rather than enforced: a refusal is a finding."""
    from bert14.artifact import OPENVINO_INT8_FILE, cpu_flags
    from bert14.check.cases import validation_suite
    from bert14.check.compare import THRESHOLDS
    from bert14.check.reference import validate_onnx
    from bert14.export.model import load_checkpoint
    from bert14.quantize.openvino import OpenVinoOptions, quantize_openvino, text_calibration

    source = load_checkpoint(directory, "sdpa")
    target = work / OPENVINO_INT8_FILE  # the name the check's runner opens with OpenVINO
    feeds = text_calibration(source.tokenizer(), calibration, source.max_tokens)
    quantize_openvino(artifact / "model.opt.onnx", target, feeds, OpenVinoOptions(), None, "train titles", cpu_flags())
    types = source.shape["type_vocab_size"]
    suite = validation_suite(source.config.vocab_size, types, source.max_tokens)
    suite += validation_suite(source.config.vocab_size, types, source.max_tokens, left_pad=True)
    tolerance = THRESHOLDS["cpu"]["int8_openvino"].logit_atol
    results = validate_onnx(source.model, target, suite, tolerance, strict_argmax=False)
    worst = max(result.max_abs_diff for result in results)
    return target, {"gate_passed": all(r.passed for r in results), "gate_max_abs_logit_diff": round(worst, 4),
                    "gate_tolerance": tolerance}  # fmt: skip


def evaluate(directory: Path, artifact: Path, openvino: Path, labels: list[str]) -> dict[str, object]:
    import torch
    from common import session

    from bert14.encode import buckets, encode
    from bert14.export.model import load_checkpoint
    from bert14.runtime.engines.openvino import OpenVinoSession

    rows = titles("test")
    texts, truth = [text for _, text in rows], np.array([labels.index(label) for label, _ in rows])
    source = load_checkpoint(directory, "sdpa")
    tokenizer = source.tokenizer()
    pad = tokenizer.token_to_id(source.tokenizer_settings.pad_token) or 0
    batches = buckets(encode(tokenizer, texts, None, source.max_tokens), 32, 8192, pad)
    names = source.family.input_names

    def torch_run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return source.model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()

    ort_int8, ov_int8 = session(str(artifact / "model.int8.onnx")), OpenVinoSession(openvino, THREADS)
    runs = {"pytorch fp32": torch_run, "onnxruntime int8": lambda f: ort_int8.run(None, f)[0],
            "openvino int8": lambda f: ov_int8.run(None, f)[0]}  # fmt: skip
    logits = {}
    for name, run in runs.items():
        out = np.zeros((len(texts), len(labels)), np.float32)  # (N, C)
        for batch in batches:
            out[batch.indices] = run(batch.feeds(names))
        logits[name] = out
    want = logits["pytorch fp32"].argmax(1)
    result: dict[str, object] = {"accuracy_pytorch_fp32": round(float((want == truth).mean()), 4)}
    for name in ("onnxruntime int8", "openvino int8"):
        got = logits[name].argmax(1)
        result[name] = {
            "accuracy": round(float((got == truth).mean()), 4),
            "top1_agreement_with_pytorch": round(float((got == want).mean()), 4),
            "flips": int((got != want).sum()),
            "max_abs_logit_diff": round(float(np.abs(logits[name] - logits["pytorch fp32"]).max()), 4),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--json", type=Path, default=Path("bench-results/families_trained.json"))
    args = parser.parse_args()

    import torch

    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.export.model import BERT14_LABELS

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    labels = list(BERT14_LABELS)
    wanted = chosen_families(args.families)
    results = {}
    for model_type in wanted:
        with tempfile.TemporaryDirectory(prefix=f"bert14-trained-{model_type}-") as tmp:
            directory, artifact = Path(tmp) / "checkpoint", Path(tmp) / "artifact"
            trained = train(model_type, directory, labels)
            print(f"{model_type}: trained in {trained['train_seconds']} s, loss {trained['final_loss']}",
                  file=sys.stderr, flush=True)  # fmt: skip
            train_texts = [text for _, text in titles("train")]
            calibration = train_texts[:: len(train_texts) // CALIBRATION_TEXTS][:CALIBRATION_TEXTS]
            export_artifact(ExportOptions(model_dir=directory, out_dir=artifact, fp16_seqlen=False, openvino=False))
            openvino, gate = openvino_int8(directory, artifact, Path(tmp), calibration)
            results[model_type] = {"shape": _shape(model_type), **trained, "openvino_gate": gate,
                                   **evaluate(directory, artifact, openvino, labels)}  # fmt: skip
            print(f"{model_type}: {results[model_type]}", file=sys.stderr, flush=True)
    write_report(args.json, {"threads": THREADS, "epochs": EPOCHS, "batch": BATCH, "train_tokens": TRAIN_TOKENS,
                             "learning_rate": LEARNING_RATE, "families": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
