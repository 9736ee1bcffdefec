"""`make bench`: speed side by side, in one process, interleaved, on 2 threads.

Configurations: PyTorch eager fp32 (the source); ONNX Runtime on the unfused model.onnx; this
project's fused fp32 (model.opt.onnx) and INT8 (model.int8.onnx, per-token: batch-invariant), beside
the per-tensor INT8 it replaced as the default (`--int8-activations per_tensor`, quantized here from
model.opt.onnx with the same options otherwise); the public recipe (ONNX
Runtime's transformer optimizer + quantize_dynamic on a TorchScript export of the eager attention);
with openvino and nncf installed, the OpenVINO engine (model.int8.ov.xml) and OpenVINO's stock
static INT8 (nncf.quantize defaults on model.onnx, the export's seeded calibration sample;
benchmarks/openvino_int8.py compares those two in depth).
Shapes: batch 1 x seq 16/128/512 and batch 8 x seq 128 (medians and p95 over rounds), plus
real-text throughput on the 1,000 THUCNews test titles (the same length-bucketed batches for all).
Prints a table, writes bench.json and bench.png (a bar chart of the table) into --out.

    .venv/bin/python benchmarks/bench.py [ARTIFACT] [--rounds 20] [--out bench-results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import THREADS, beside_pytorch, interleaved, measured, public_recipe, session

SHAPES = ((1, 16), (1, 128), (1, 512), (8, 128))


class Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        width = 30
        filled = width * self.done // self.total
        elapsed = time.perf_counter() - self.started
        print(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {what:<24} {elapsed:5.0f} s",
            end="" if self.done < self.total else "\n",
            file=sys.stderr,
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", nargs="?", default="artifacts/bert14", type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    import torch

    from bert14.artifact import read_manifest
    from bert14.export.model import rebuild

    torch.set_num_threads(THREADS)
    manifest = read_manifest(args.artifact)
    progress = Progress(3 + len(SHAPES) + 1)
    source = rebuild(manifest.source, manifest.source.get("attn_implementation", "sdpa"))
    progress.step("source model")
    config = source.config
    with tempfile.TemporaryDirectory() as tmp:
        eager = rebuild(manifest.source, "eager")
        _, recipe = public_recipe(eager.model, Path(tmp), config.num_attention_heads, config.hidden_size)
        del eager
        progress.step("public recipe")
        per_tensor = per_tensor_int8(args.artifact, Path(tmp))
        sessions = {
            "onnxruntime unfused fp32": session(str(args.artifact / "model.onnx")),
            "bert14 fused fp32": session(str(args.artifact / "model.opt.onnx")),
            "public recipe int8": session(str(recipe)),
            "bert14 int8": session(str(args.artifact / "model.int8.onnx")),
            PER_TENSOR: session(str(per_tensor)),
        }
        sessions |= openvino_sessions(args.artifact, Path(tmp), config)
        progress.step("sessions")
        model = source.model
        table: dict[str, dict[str, dict[str, float]]] = {}
        for batch, sequence in SHAPES:
            timings = beside_pytorch(
                model, "pytorch eager fp32", sessions, batch, sequence, args.rounds, config.vocab_size
            )
            table[f"{batch}x{sequence}"] = {
                n: {"median_ms": t.median_ms, "p95_ms": t.p95_ms} for n, t in timings.items()
            }
            progress.step(f"{batch} x {sequence}")
        throughput = real_text(args.artifact, model, sessions)
        progress.step("real text")
    report = {
        "measured": measured(),
        "threads": THREADS,
        "rounds": args.rounds,
        "latency": table,
        "titles_per_second": throughput,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    chart(report, args.out / "bench.png")
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0


PER_TENSOR = "bert14 int8 per-tensor"


def per_tensor_int8(artifact: Path, work: Path) -> Path:
    """The artifact's fused graph quantized as the default was before the per-token recipe (one activation
    scale per tensor, int8 embedding tables): what the batch-invariant default is timed against."""
    from bert14.artifact import cpu_flags
    from bert14.quantize.dynamic import DynamicOptions, quantize_dynamic_int8

    out = work / "per_tensor.int8.onnx"
    options = DynamicOptions(activations="per_tensor", keep_embedding_fp32=False)  # the old default, exactly
    quantize_dynamic_int8(artifact / "model.opt.onnx", out, options, cpu_flags())
    return out


def openvino_sessions(artifact: Path, work: Path, config) -> dict[str, object]:
    """The OpenVINO rows, when the artifact has the OpenVINO model and openvino + nncf are installed."""
    from bert14.runtime.engines import openvino as openvino_engine

    if not (artifact / "model.int8.ov.xml").is_file() or not openvino_engine.available():
        print("bench: no OpenVINO rows (no model.int8.ov.xml, or openvino is not installed)", file=sys.stderr)
        return {}
    from openvino_int8 import STOCK, StockSession, stock_int8

    from bert14.quantize.openvino import seeded_calibration

    calibration = seeded_calibration(config.vocab_size, config.type_vocab_size, config.max_position_embeddings)
    stock = stock_int8(artifact / "model.onnx", calibration, work)[STOCK]
    return {
        "bert14 openvino int8": openvino_engine.OpenVinoSession(artifact / "model.int8.ov.xml", THREADS),
        "openvino stock int8": StockSession(stock),
    }


def real_text(artifact: Path, model, sessions: dict) -> dict[str, float]:
    import torch
    from data import titles

    from bert14.encode import buckets, encode
    from bert14.tokenizer import load_tokenizer

    tokenizer, _ = load_tokenizer(artifact)
    texts = [text for _, text in titles("test")]
    batches = buckets(encode(tokenizer, texts, None, 512), max_batch=32, max_tokens=8192)

    def pytorch() -> None:
        with torch.inference_mode():
            for b in batches:
                model(**{k: torch.from_numpy(v) for k, v in b.feeds().items()})

    runners = {"pytorch eager fp32": pytorch}
    runners.update({name: (lambda s=s: [s.run(None, b.feeds()) for b in batches]) for name, s in sessions.items()})
    timings = interleaved(runners, rounds=3, warmup=1)
    return {name: round(len(texts) / (t.median_ms / 1000), 1) for name, t in timings.items()}


def print_table(report: dict) -> None:
    shapes = list(report["latency"])
    names = list(next(iter(report["latency"].values())))
    print(f"{'ms, median (p95)':<26}" + "".join(f"{s:>17}" for s in shapes) + f"{'titles/s':>11}")
    for name in names:
        cells = "".join(
            f"{report['latency'][s][name]['median_ms']:>9.1f} ({report['latency'][s][name]['p95_ms']:>5.1f})"
            for s in shapes
        )
        print(f"{name:<26}{cells}{report['titles_per_second'][name]:>11.1f}")


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(report["latency"])
    names = list(next(iter(report["latency"].values())))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(names)
    x = np.arange(len(shapes))
    for i, name in enumerate(names):
        values = [report["latency"][s][name]["median_ms"] for s in shapes]
        left.bar(x + i * width, values, width, label=name)
    left.set_xticks(x + width * (len(names) - 1) / 2, [s.replace("x", " x ") for s in shapes])
    left.set_ylabel("median latency, ms (log)")
    left.set_yscale("log")
    left.set_title(f"batch x sequence, {report['threads']} threads")
    left.legend(fontsize=8)
    right.barh(names, [report["titles_per_second"][n] for n in names], color=[f"C{i}" for i in range(len(names))])
    right.set_xlabel("THUCNews test titles / s")
    right.invert_yaxis()
    right.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
