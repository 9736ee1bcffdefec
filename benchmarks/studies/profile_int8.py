"""Where an INT8 model's time goes, by op type (ONNX Runtime's profiler), batch 1 x seq 128.

    .venv/bin/python benchmarks/studies/profile_int8.py artifacts/bert14/model.int8.onnx
    .venv/bin/python benchmarks/studies/profile_int8.py artifacts/bert14/model.opt.onnx --quantize-keep-layer-norm

The second form quantizes the fused model without the LayerNorm decomposition first, to show
the share the fused SkipLayerNormalization kernel had.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, data.py

from common import THREADS, bert_feeds  # noqa: E402

RUNS = 30


def profile(path: Path) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """ms per run by op type, and the median ms per run of each node (op type, name)."""
    from bert14.runtime.engines import SessionSettings
    from bert14.runtime.engines.onnxruntime import session_options

    options = session_options(SessionSettings(THREADS, spinning=False))  # as in the other benchmarks
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = bert_feeds(1, 128)
    for _ in range(RUNS):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    per_node: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] += event["dur"]
            per_node[(op, event["name"].removesuffix("_kernel_time"))].append(event["dur"] / 1000)
    by_op = {op: us / RUNS / 1000 for op, us in totals.most_common()}  # ms per run
    return by_op, {node: statistics.median(ms) for node, ms in per_node.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--quantize-keep-layer-norm", action="store_true")
    parser.add_argument("--nodes", type=int, default=0, help="also list the N slowest nodes (median ms each)")
    args = parser.parse_args()
    path = args.model
    if args.quantize_keep_layer_norm:
        from bert14.artifact import cpu_flags
        from bert14.quantize.dynamic import DynamicOptions, quantize_dynamic_int8

        path = Path(tempfile.mkdtemp()) / "int8.onnx"
        quantize_dynamic_int8(args.model, path, DynamicOptions(split_layer_norm=False), cpu_flags())
    per_op, per_node = profile(path)
    total = sum(per_op.values())
    print(f"{path.name}: {total:.2f} ms of kernel time per run (batch 1 x seq 128, {THREADS} threads)")
    for op, ms in list(per_op.items())[:10]:
        print(f"  {op:<28} {ms:6.2f} ms  {100 * ms / total:5.1f}%")
    for (op, name), ms in sorted(per_node.items(), key=lambda item: -item[1])[: args.nodes]:
        print(f"  {ms:6.3f} ms  {op:<24} {name}")


if __name__ == "__main__":
    main()
