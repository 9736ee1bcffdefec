"""What makes OpenVINO's answers for a text move when it is batched: the batch, its neighbours, or padding?

Each THUCNews test title is run alone, then as row 0 of a batch of two copies, beside another title
of the same length (no padding), and padded by 8 and by 64 tokens; a row counts when its logits are
bit-identical to "alone". Every model file named is read by OpenVINO (an ONNX file in fp32, or an
OpenVINO IR). With `--int8-variants`, the fused graph and the fused graph without the Attention fusion
are both quantized by bert14's NNCF recipe (seeded calibration) and compared for padding and speed.

    .venv/bin/python benchmarks/studies/openvino_padding.py artifacts/bert14 \\
        model.int8.ov.xml model.opt.onnx model.onnx [--int8-variants]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, data.py
from common import THREADS  # noqa: E402
from data import titles  # noqa: E402

TEXTS = 60
CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": THREADS}


def _feeds(rows: list[tuple[np.ndarray, np.ndarray]], length: int) -> dict[str, np.ndarray]:
    """Rows (ids, type ids) right-padded to `length`: (B, S) int64 each."""
    shape = (len(rows), length)
    ids, mask, types = (np.zeros(shape, np.int64) for _ in range(3))
    for b, (row_ids, row_types) in enumerate(rows):
        ids[b, : len(row_ids)], mask[b, : len(row_ids)], types[b, : len(row_ids)] = row_ids, 1, row_types
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def padding_study(compiled, rows: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    def logits(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(compiled.create_infer_request().infer(feeds)[compiled.output("logits")])[0]

    same: dict[str, list[bool]] = {"pad+8": [], "pad+64": [], "batch of 2 copies": [], "beside a same-length text": []}
    worst = dict.fromkeys(same, 0.0)
    for i, row in enumerate(rows):
        length = len(row[0])
        alone = logits(_feeds([row], length))
        cases = {
            "pad+8": _feeds([row], length + 8),
            "pad+64": _feeds([row], length + 64),
            "batch of 2 copies": _feeds([row, row], length),
        }
        partner = next((other for j, other in enumerate(rows) if j != i and len(other[0]) == length), None)
        if partner is not None:
            cases["beside a same-length text"] = _feeds([row, partner], length)
        for name, feeds in cases.items():
            got = logits(feeds)
            same[name].append(bool(np.array_equal(got, alone)))
            worst[name] = max(worst[name], float(np.abs(got - alone).max()))
    return {
        name: {"bit_identical": f"{sum(flags)}/{len(flags)}", "max_abs_logit_diff": worst[name]}
        for name, flags in same.items()
    }


def int8_variants(artifact: Path, rows, core) -> dict[str, object]:
    from bert14.artifact import cpu_flags, read_manifest
    from bert14.optimize.pipeline import OptimizeOptions, optimize_file
    from bert14.quantize.openvino import OpenVinoOptions, quantize_openvino, seeded_calibration

    model = read_manifest(artifact).model
    calibration = seeded_calibration(model.vocab_size, model.type_vocab_size, model.max_position_embeddings)
    work = Path(tempfile.mkdtemp())
    optimize_file(artifact / "model.onnx", work / "no_attention.onnx", OptimizeOptions(skip=frozenset({"attention"})))
    sources = {"fused": artifact / "model.opt.onnx", "fused, attention unfused": work / "no_attention.onnx"}
    compiled = {}
    for name, source in sources.items():
        target = work / f"{len(compiled)}.xml"
        quantize_openvino(source, target, calibration, OpenVinoOptions(), cpu_flags=cpu_flags())
        compiled[name] = core.compile_model(core.read_model(str(target)), "CPU", CONFIG)
    report: dict[str, dict[str, object]] = {name: {"padding": padding_study(c, rows)} for name, c in compiled.items()}
    rng = np.random.default_rng(0)
    for batch, length in ((1, 128), (8, 128), (1, 512)):
        feeds = _feeds([(rng.integers(100, model.vocab_size, length), np.zeros(length, np.int64))] * batch, length)
        requests = {name: c.create_infer_request() for name, c in compiled.items()}
        times: dict[str, list[float]] = {name: [] for name in compiled}
        for _ in range(15):  # interleaved rounds
            for name, request in requests.items():
                started = time.perf_counter()
                request.infer(feeds)
                times[name].append(time.perf_counter() - started)
        base = statistics.median(times["fused"])
        for name in compiled:
            report[name][f"{batch}x{length} time vs fused"] = round(statistics.median(times[name]) / base, 3)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("files", nargs="+", help="model files of the artifact for OpenVINO to read")
    parser.add_argument("--int8-variants", action="store_true")
    args = parser.parse_args()

    import openvino as ov

    from bert14.encode import encode
    from bert14.tokenizer import load_tokenizer

    tokenizer, _ = load_tokenizer(args.artifact)
    encoded = encode(tokenizer, [text for _, text in titles("test")][:TEXTS], None, 512)
    rows = [(np.array(e.ids, np.int64), np.array(e.type_ids, np.int64)) for e in encoded]
    core = ov.Core()
    report: dict[str, object] = {}
    for name in args.files:
        compiled = core.compile_model(core.read_model(str(args.artifact / name)), "CPU", CONFIG)
        report[name] = padding_study(compiled, rows)
    if args.int8_variants:
        report["int8 variants"] = int8_variants(args.artifact, rows, core)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
