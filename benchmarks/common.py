"""Shared benchmark plumbing: quiet ORT sessions on 2 threads, interleaved timing, medians."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Several ORT sessions and PyTorch share 2 cores in one process: idle spinning threads would
# steal them and distort every figure (by up to 2x, measured on this project's machines).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

THREADS = 2
# The families the family benchmarks run, BERT-14's first: the yardstick the others are read against.
FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "ernie")


def chosen_families(value: str) -> list[str]:
    """--families' comma-separated names, checked against FAMILIES."""
    wanted = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"--families: unknown {unknown}; expected some of {list(FAMILIES)}")
    return wanted


def session(path: str, optimized: bool = True):
    """A CPU session as every benchmark times one: THREADS intra-op threads, threads that never spin
    (the side-by-side rows take turns on the same cores), the runtime's session options otherwise."""
    from bert14.runtime.engines import SessionSettings, onnxruntime

    return onnxruntime.open_session(Path(path), "cpu", SessionSettings(THREADS, spinning=False, optimized=optimized))[0]


def measured() -> dict[str, object]:
    """When and where a benchmark ran: every JSON report carries it (docs/numbers.md shows it)."""
    import datetime
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
    }


def write_report(path: Path, report: dict[str, object]) -> None:
    """A benchmark's JSON report, with when and where it ran."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"measured": measured(), **report}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {path}")


def bert_feeds(batch: int, sequence: int, vocab: int = 21128, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(0, vocab, size=(batch, sequence), dtype=np.int64),
        "attention_mask": np.ones((batch, sequence), dtype=np.int64),
        "token_type_ids": np.zeros((batch, sequence), dtype=np.int64),
    }


@dataclass
class Timing:
    median_ms: float
    p95_ms: float
    runs: int


def interleaved(
    runners: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 2,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, Timing]:
    """Run every runner once per round, in turn, so drift on a shared machine hits all alike.
    `sync`: waits for queued device work (CUDA) before and after each timed run."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            sync()
            started = time.perf_counter()
            run()
            sync()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {
        name: Timing(statistics.median(values), float(np.percentile(values, 95)), len(values))
        for name, values in samples.items()
    }


def beside_pytorch(
    model, pytorch_name: str, sessions: dict, batch: int, sequence: int, rounds: int, vocab: int = 21128
) -> dict[str, Timing]:
    """PyTorch eager and every ORT session on the same (batch, sequence) random ids, interleaved."""
    import torch

    feeds = bert_feeds(batch, sequence, vocab)
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}

    def pytorch() -> None:
        with torch.inference_mode():
            model(**tensors)

    runners: dict[str, Callable[[], object]] = {pytorch_name: pytorch}
    runners.update({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()})
    return interleaved(runners, rounds)


def public_recipe_int8(source: Path, target: Path) -> None:
    """quantize_dynamic with int8 weights, as ONNX Runtime documents it for BERT. Two fixes make it
    run on every optimizer's output: stale value_info of initializers is dropped (its Gemm -> MatMul
    rewrite transposes weights), and DefaultTensorType covers values ONNX cannot type (outputs of
    contrib ops), as its error message advises."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    names = {tensor.name for tensor in model.graph.initializer}
    kept = [info for info in model.graph.value_info if info.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    quantize_dynamic(
        model,
        str(target),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def ort_transformers_optimizer(source: Path, target: Path, num_heads: int, hidden_size: int, gpu: bool = False) -> Path:
    """ONNX Runtime's transformer optimizer as its documentation runs it for BERT (opt_level 0: its
    fusions, not the session's); `gpu`: use_gpu and then fp16 with fp32 inputs and outputs, its
    documented CUDA recipe. The one place the benchmarks call it."""
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0, use_gpu=gpu
    )
    if gpu:
        model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(target))
    return target


def public_recipe(model, workdir: Path, num_heads: int, hidden_size: int) -> tuple[Path, Path]:
    """The public CPU recipe from a PyTorch model: TorchScript export of the eager attention,
    ONNX Runtime's transformer optimizer, quantize_dynamic. Returns (optimized fp32, int8)."""
    from bert14.export.onnx_export import ExportSettings, export_onnx

    exported = workdir / "recipe.onnx"
    export_onnx(model, exported, ExportSettings("torchscript", 17), model.config.max_position_embeddings)
    fp32 = ort_transformers_optimizer(exported, workdir / "recipe.opt.onnx", num_heads, hidden_size)
    int8 = workdir / "recipe.int8.onnx"
    public_recipe_int8(fp32, int8)
    return fp32, int8
