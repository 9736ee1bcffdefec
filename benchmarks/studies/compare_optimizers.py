"""ONNX Runtime's optimizer vs onnxscript's optimize_for_ort vs bert14's, on four BERT-14 exports.

For each export variant (TorchScript or dynamo exporter x eager or sdpa attention) of the
full-size default BERT-14: fused-op counts from each optimizer, and CPU latency at batch 1 x seq
128 on 2 threads (interleaved rounds, medians) of the unfused and the three optimized models;
with --int8, also of each optimized model after ONNX Runtime's quantize_dynamic.

    .venv/bin/python benchmarks/studies/compare_optimizers.py [--rounds 30] [--int8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, data.py

from common import bert_feeds, interleaved, ort_transformers_optimizer, public_recipe_int8, session  # noqa: E402

VARIANTS = [("torchscript", "eager"), ("torchscript", "sdpa"), ("dynamo", "eager"), ("dynamo", "sdpa")]
COUNTED = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")


def counts(path: Path) -> dict[str, int]:
    import onnx

    ops = Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)
    return {op: ops.get(op, 0) for op in COUNTED if ops.get(op, 0) or op in COUNTED[:4]}


def ort_optimizer(source: Path, target: Path) -> None:
    ort_transformers_optimizer(source, target, num_heads=12, hidden_size=768)


def onnxscript_optimizer(source: Path, target: Path) -> None:
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model = ir.load(str(source))
    optimize_for_ort(model)
    ir.save(model, str(target))


def bert14_optimizer(source: Path, target: Path) -> None:
    from bert14.optimize.pipeline import OptimizeOptions, optimize_file

    optimize_file(source, target, OptimizeOptions(num_layers=12, num_heads=12, gate=False))


OPTIMIZERS = {"onnxruntime": ort_optimizer, "onnxscript": onnxscript_optimizer, "bert14": bert14_optimizer}


def run_variant(exporter: str, attn: str, workdir: Path, rounds: int, int8: bool) -> dict[str, object]:
    from bert14.export.model import build_default
    from bert14.export.onnx_export import ExportSettings, export_onnx

    source = build_default(attn=attn)
    unfused = workdir / f"{exporter}-{attn}.onnx"
    export_onnx(source.model, unfused, ExportSettings(exporter, 18), 512)
    del source
    paths = {"unfused": unfused}
    result: dict[str, object] = {"counts": {}, "optimize_seconds": {}, "errors": {}}
    for name, optimize in OPTIMIZERS.items():
        target = workdir / f"{exporter}-{attn}.{name}.onnx"
        started = time.perf_counter()
        try:
            optimize(unfused, target)
        except Exception as exc:  # a public optimizer failing on a variant is a result to report
            result["errors"][name] = str(exc).splitlines()[0][:200]  # type: ignore[index]
            continue
        result["optimize_seconds"][name] = round(time.perf_counter() - started, 1)  # type: ignore[index]
        result["counts"][name] = counts(target)  # type: ignore[index]
        paths[name] = target
    feeds = bert_feeds(1, 128)
    sessions = {name: session(str(path)) for name, path in paths.items()}
    timings = interleaved({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}, rounds)
    result["latency_ms_1x128"] = {name: round(t.median_ms, 2) for name, t in timings.items()}
    del sessions
    if int8:
        # What the fusion buys on the CPU: the public INT8 recipe (quantize_dynamic, int8 weights)
        # applied to each optimizer's output. An unfused Attention stays fp32 MatMuls/Softmax.
        quantized = {}
        for name in OPTIMIZERS:
            if name in paths:
                quantized[name] = workdir / f"{exporter}-{attn}.{name}.int8.onnx"
                public_recipe_int8(paths[name], quantized[name])
        sessions = {name: session(str(path)) for name, path in quantized.items()}
        timings = interleaved({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}, rounds)
        result["int8_latency_ms_1x128"] = {name: round(t.median_ms, 2) for name, t in timings.items()}
        del sessions
        for path in quantized.values():
            path.unlink()
    for path in paths.values():
        path.unlink()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--int8", action="store_true", help="also time each output after quantize_dynamic")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for exporter, attn in VARIANTS:
            key = f"{exporter}/{attn}"
            print(f"[{key}] exporting, optimizing, timing ...", file=sys.stderr, flush=True)
            results[key] = run_variant(exporter, attn, Path(tmp), args.rounds, args.int8)
    header = f"{'variant':<18} {'optimizer':<12} {'EmbLN':>5} {'Attn':>5} {'SkipLN':>6} {'Gelu*':>5} {'fp32 ms':>8}"
    print(header + (f" {'int8 ms':>8}" if args.int8 else ""))
    for key, result in results.items():
        latency = result["latency_ms_1x128"]
        int8 = result.get("int8_latency_ms_1x128", {})
        print(f"{key:<18} {'unfused':<12} {'':>5} {'':>5} {'':>6} {'':>5} {latency['unfused']:>8.1f}")
        for name in OPTIMIZERS:
            if name in result["errors"]:
                print(f"{key:<18} {name:<12} failed: {result['errors'][name]}")
                continue
            c = result["counts"][name]
            gelu = c.get("BiasGelu", 0) + c.get("FastGelu", 0) + c.get("Gelu", 0)
            line = (
                f"{key:<18} {name:<12} {c['EmbedLayerNormalization']:>5} {c['Attention']:>5} "
                f"{c['SkipLayerNormalization']:>6} {gelu:>5} {latency[name]:>8.1f}"
            )
            print(line + (f" {int8[name]:>8.1f}" if name in int8 else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
