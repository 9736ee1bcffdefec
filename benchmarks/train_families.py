"""INT8 agreement on trained models of every family: a small classifier of each, trained here.

Seeded weights make logits that barely depend on the text, so INT8's agreement with PyTorch on them
says little. For a figure that does, each family's small classifier (2 layers of 128, seeded
checkpoint from export/families.py, its own tokenizer) is trained from scratch on the 33,740
THUCNews train titles for EPOCHS epochs, saved as save_pretrained saves it, exported with
`bert14 export --model DIR --calibration 300-titles`, and measured on the 1,000 test titles:
accuracy of PyTorch fp32, bert14 INT8 (ONNX Runtime) and bert14 INT8 (OpenVINO), and top-1 agreement
of each INT8 with PyTorch.

    .venv/bin/python benchmarks/train_families.py [--families ...] [--json docs/results/families_trained.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import THREADS, measured
from data import titles

ALL = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "ernie")
SMALL = {"vocab_size": 30000, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 512, "positions": 512, "type_vocab_size": 2}  # fmt: skip
# What differs per family beyond SMALL (ELECTRA's narrower embeddings, ERNIE's task types).
EXTRA = {"roberta": {"type_vocab_size": 1}, "xlm-roberta": {"type_vocab_size": 1}, "distilbert": {},
         "electra": {"embedding_size": 64}, "ernie": {"use_task_id": True, "task_type_vocab_size": 3}}  # fmt: skip
EPOCHS = 2
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


def evaluate(model_type: str, directory: Path, artifact: Path, labels: list[str]) -> dict[str, object]:
    import torch

    from bert14.encode import buckets
    from bert14.export.model import load_checkpoint
    from bert14.runtime import Classifier

    rows = titles("test")
    texts, truth = [text for _, text in rows], np.array([labels.index(label) for label, _ in rows])
    source = load_checkpoint(directory, "sdpa")
    clf = Classifier.load(artifact, precision="fp32", provider="cpu", threads=THREADS)
    encoded = clf.encode(texts)
    reference = np.zeros((len(texts), len(labels)), np.float32)  # (N, C)
    pad = source.tokenizer().token_to_id(source.tokenizer_settings.pad_token) or 0
    for batch in buckets(encoded, 32, 8192, pad):
        feeds = batch.feeds(source.family.input_names)
        with torch.inference_mode():
            reference[batch.indices] = source.model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    want = reference.argmax(1)
    result: dict[str, object] = {"accuracy_pytorch_fp32": round(float((want == truth).mean()), 4)}
    for name, precision, engine in (("onnxruntime int8", "int8", "onnxruntime"), ("openvino int8", "int8", "openvino")):
        served = Classifier.load(artifact, precision=precision, engine=engine, provider="cpu", threads=THREADS)
        got = np.array([labels.index(p.label) for p in served.predict(texts)])
        result[name] = {
            "accuracy": round(float((got == truth).mean()), 4),
            "top1_agreement_with_pytorch": round(float((got == want).mean()), 4),
            "flips": int((got != want).sum()),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(ALL))
    parser.add_argument("--json", type=Path, default=Path("bench-results/families_trained.json"))
    args = parser.parse_args()

    import torch

    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.export.model import BERT14_LABELS

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    labels = list(BERT14_LABELS)
    wanted = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(ALL))
    if unknown:
        raise SystemExit(f"--families: unknown {unknown}; expected some of {list(ALL)}")
    results = {}
    for model_type in wanted:
        with tempfile.TemporaryDirectory(prefix=f"bert14-trained-{model_type}-") as tmp:
            directory, artifact = Path(tmp) / "checkpoint", Path(tmp) / "artifact"
            trained = train(model_type, directory, labels)
            print(f"{model_type}: trained in {trained['train_seconds']} s, loss {trained['final_loss']}",
                  file=sys.stderr, flush=True)  # fmt: skip
            calibration = Path(tmp) / "calibration.txt"
            train_texts = [text for _, text in titles("train")]
            step = len(train_texts) // CALIBRATION_TEXTS
            calibration.write_text("\n".join(train_texts[::step][:CALIBRATION_TEXTS]) + "\n", encoding="utf-8")
            export_artifact(ExportOptions(model_dir=directory, out_dir=artifact, fp16_seqlen=False,
                                          calibration_texts=calibration))  # fmt: skip
            results[model_type] = {"shape": _shape(model_type), **trained,
                                   **evaluate(model_type, directory, artifact, labels)}  # fmt: skip
            print(f"{model_type}: {results[model_type]}", file=sys.stderr, flush=True)
    report = {"measured": measured(), "threads": THREADS, "epochs": EPOCHS, "batch": BATCH,
              "train_tokens": TRAIN_TOKENS, "learning_rate": LEARNING_RATE, "families": results}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
