"""Why the INT8 artifact splits its SkipLayerNorms into Sum + LayerNormalization (quantize/layer_norm_cpu.py).

Times 24 chained (Skip)LayerNorms on a (1, 128, 768) tensor through ONNX Runtime's CPU provider,
four ways: the SkipLayerNormalization contrib op, Add + LayerNormalization, Sum +
LayerNormalization, and the same math as ten elementwise ops; on 1 and 2 threads (spinning off, as
in the other benchmarks), with graph optimizations off (each runs as written) and on (ONNX
Runtime's default, whose session-level fusions may rewrite them).

    .venv/bin/python benchmarks/layer_norm_cpu.py
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import onnxruntime as ort
from onnx import helper, numpy_helper

HIDDEN, SEQUENCE, CHAIN, RUNS = 768, 128, 24, 200
KINDS = ("SkipLayerNormalization", "Add + LayerNormalization", "Sum + LayerNormalization", "ten elementwise ops")


def _model(kind: str) -> bytes:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=HIDDEN).astype(np.float32), n) for n in ("g", "b", "bias")]
    inits += [
        numpy_helper.from_array(np.array([-1], np.int64), "ax"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
    ]
    nodes, prev = [], "x"
    for i in range(CHAIN):
        out, p = f"y{i}", f"n{i}_"
        if kind == "SkipLayerNormalization":
            nodes.append(
                helper.make_node(kind, [prev, "r", "g", "b", "bias"], [out], domain="com.microsoft", epsilon=1e-12)
            )
        elif kind in ("Add + LayerNormalization", "Sum + LayerNormalization"):
            nodes += [
                helper.make_node(kind.split()[0], [prev, "r"], [p + "a"]),
                helper.make_node("LayerNormalization", [p + "a", "g", "b"], [out], axis=-1, epsilon=1e-12),
            ]
        else:
            nodes += [
                helper.make_node("Add", [prev, "r"], [p + "a"]),
                helper.make_node("ReduceMean", [p + "a", "ax"], [p + "m"], keepdims=1),
                helper.make_node("Sub", [p + "a", p + "m"], [p + "d"]),
                helper.make_node("Mul", [p + "d", p + "d"], [p + "d2"]),
                helper.make_node("ReduceMean", [p + "d2", "ax"], [p + "v"], keepdims=1),
                helper.make_node("Add", [p + "v", "eps"], [p + "ve"]),
                helper.make_node("Sqrt", [p + "ve"], [p + "s"]),
                helper.make_node("Div", [p + "d", p + "s"], [p + "n"]),
                helper.make_node("Mul", [p + "n", "g"], [p + "ng"]),
                helper.make_node("Add", [p + "ng", "b"], [out]),
            ]
        prev = out
    shape = [1, SEQUENCE, HIDDEN]
    graph = helper.make_graph(
        nodes,
        "layer_norms",
        [helper.make_tensor_value_info("x", 1, shape), helper.make_tensor_value_info("r", 1, shape)],
        [helper.make_tensor_value_info(prev, 1, shape)],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    return model.SerializeToString()


def main() -> None:
    rng = np.random.default_rng(1)
    feeds = {name: rng.normal(size=(1, SEQUENCE, HIDDEN)).astype(np.float32) for name in ("x", "r")}
    print(f"ms per LayerNorm of (1, {SEQUENCE}, {HIDDEN}), mean over {RUNS} runs of a chain of {CHAIN}")
    levels = {
        "as written": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "default": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    for kind, (level_name, level), threads in itertools.product(KINDS, levels.items(), (1, 2)):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = level
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = ort.InferenceSession(_model(kind), options, providers=["CPUExecutionProvider"])
        for _ in range(20):
            session.run(None, feeds)
        started = time.perf_counter()
        for _ in range(RUNS):
            session.run(None, feeds)
        per_op = (time.perf_counter() - started) / RUNS / CHAIN * 1000
        print(f"  {kind:<26} {level_name:<10} {threads} thread(s)  {per_op:.3f} ms")


if __name__ == "__main__":
    main()
