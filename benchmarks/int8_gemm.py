"""How fast ONNX Runtime's integer GEMM is on this machine, outside any model.

One DynamicQuantizeMatMul (fp32 activations quantized at run time, int8 weights) of BERT-14's FFN
shapes, 768 x 3072 and 3072 x 768, at 128 rows (batch 1 x seq 128) and 1,024 rows; 2 threads,
spinning off, median of 30 runs. Set against the per-node times of `profile_int8.py` it says how
close the INT8 model's GEMMs run to what the kernel can do at all.

    .venv/bin/python benchmarks/int8_gemm.py
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from common import THREADS
from onnx import helper, numpy_helper

RUNS = 30


def _model(k: int, n: int) -> bytes:
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "W"),
        numpy_helper.from_array(np.array(0.01, np.float32), "scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zero"),
    ]
    node = helper.make_node("DynamicQuantizeMatMul", ["x", "W", "scale", "zero"], ["y"], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("x", 1, ["rows", k])],
        [helper.make_tensor_value_info("y", 1, ["rows", n])],
        weights,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    return model.SerializeToString()


def main() -> None:
    for k, n in ((768, 3072), (3072, 768)):
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = ort.InferenceSession(_model(k, n), options, providers=["CPUExecutionProvider"])
        for rows in (128, 1024):
            x = np.random.default_rng(1).normal(size=(rows, k)).astype(np.float32)
            for _ in range(5):
                session.run(None, {"x": x})
            times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                session.run(None, {"x": x})
                times.append(time.perf_counter() - started)
            median = float(np.median(times))
            print(f"{rows:5d} x {k} x {n}: {median * 1000:6.3f} ms  {rows * k * n / median / 1e9:5.0f} GMAC/s")


if __name__ == "__main__":
    main()
