"""`make gpu-check`: the fp32 and fp16 artifacts on ONNX Runtime's CUDA provider, against PyTorch.

On a machine with an NVIDIA GPU and onnxruntime-gpu: parity of every artifact against the PyTorch
source on the same GPU (fp32, TF32 off; this is `bert14 check --provider cuda`), then latency at
batch 1/8/32 x seq 128 and batch 1 x seq 512, interleaved and side by side:

    torch fp16       the PyTorch source in fp16 (sdpa attention), eager
    bert14 fp32      model.opt.onnx, IO binding (inputs and outputs stay on the GPU)
    bert14 fp16      model.fp16.onnx, IO binding
    bert14 fp16+cg   model.fp16.onnx, IO binding and a CUDA graph per shape
    seqlen fp16+cg   model.fp16.seqlen.onnx: Attention reads sequence lengths (1-D mask, right
                     padding only; optimize/mask_index.py), IO binding and a CUDA graph
    runtime fp16+cg  bert14.runtime.Classifier (fp16, CUDA, cuda_graph=True) on the same batch;
                     it loads the seqlen file when the artifact has one
    public fp16+cg   ONNX Runtime's optimizer (use_gpu) on a TorchScript/eager export, fp16,
                     IO binding and a CUDA graph: the best public configuration

Without a GPU it says so and exits 0. `--provider cpu` runs the same code on the CPU provider
(no CUDA graphs, no public export), which is how its logic is tested.

    python benchmarks/gpu_check.py ARTIFACT [--rounds 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bert14.check.compare import CUDA_FP16_LOGIT_ATOL

SHAPES = ((1, 128), (8, 128), (32, 128), (1, 512))


def cuda_available() -> bool:
    try:
        import onnxruntime as ort
        import torch  # noqa: F401  (loads the CUDA/cuDNN libraries onnxruntime-gpu links against)
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()


class Runner:
    """One session, opened as the runtime opens it (runtime/engines/onnxruntime.py), with inputs and the
    output bound once to the provider's device: the timings are the model's, not the copies'."""

    def __init__(self, path: Path, provider: str, feeds: dict[str, np.ndarray], cuda_graph: bool = False) -> None:
        import onnxruntime as ort

        from bert14.runtime.engines import SessionSettings, onnxruntime

        device = "cuda" if provider == "cuda" else "cpu"
        threads = None if provider == "cuda" else 2
        settings = SessionSettings(threads, spinning=False, cuda_graph=cuda_graph)
        self.session, actual = onnxruntime.open_session(Path(path), device, settings)
        if actual != device:
            raise SystemExit(f"{path.name}: the {device} provider did not take the model (it runs on {actual})")
        self.binding = self.session.io_binding()
        self._keep = []
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
            self._keep.append(value)
            self.binding.bind_ortvalue_input(name, value)
        labels = self.session.get_outputs()[0].shape[-1]
        batch = next(iter(feeds.values())).shape[0]
        self.output = ort.OrtValue.ortvalue_from_shape_and_type([batch, labels], np.float32, device, 0)
        self.binding.bind_ortvalue_output("logits", self.output)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()

    def logits(self) -> np.ndarray:
        self()
        return self.output.numpy()


def _interleaved(runners: dict[str, Callable[[], object]], rounds: int, sync: Callable[[], None]) -> dict:
    from common import interleaved

    timings = interleaved(runners, rounds, warmup=3, sync=sync)
    return {name: round(t.median_ms, 3) for name, t in timings.items()}


def _public_fp16(workdir: Path, eager_source) -> Path:
    """ONNX Runtime's documented GPU recipe: TorchScript/eager export, its optimizer, fp16."""
    from common import ort_transformers_optimizer

    from bert14.export.onnx_export import ExportSettings, export_onnx

    config = eager_source.config
    exported = workdir / "public.onnx"
    export_onnx(eager_source.model, exported, ExportSettings("torchscript", 17), config.max_position_embeddings)
    target = workdir / "public.fp16.onnx"
    return ort_transformers_optimizer(exported, target, config.num_attention_heads, config.hidden_size, gpu=True)


def _seqlen_fp16(workdir: Path, artifact: Path) -> Path:
    """The artifact's model.fp16.seqlen.onnx, or the same built from model.opt.onnx (older artifacts)."""
    if (artifact / "model.fp16.seqlen.onnx").is_file():
        return artifact / "model.fp16.seqlen.onnx"
    from bert14.optimize.mask_index import write_seqlen_fp16

    target = workdir / "seqlen.fp16.onnx"
    write_seqlen_fp16(artifact / "model.opt.onnx", target)
    return target


def _runtime_runner(artifact: Path, feeds: dict[str, np.ndarray]):
    from bert14.encode import Batch
    from bert14.runtime import Classifier

    clf = Classifier.load(artifact, precision="fp16", provider="cuda", cuda_graph=True, warmup=False)
    batch = Batch(
        list(range(len(feeds["input_ids"]))), feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"]
    )
    return lambda: clf._forward(batch)


def _model_file(clf) -> str:
    return Path(clf._session._model_path).name if hasattr(clf._session, "_model_path") else "?"


def runtime_parity(artifact: Path, model, device: str) -> dict:
    """The embeddable runtime on CUDA (fp16, CUDA graphs) against PyTorch fp32 on real-looking text."""
    import torch

    from bert14.check.cases import SAMPLE_TEXTS
    from bert14.head import disagreements
    from bert14.runtime import Classifier

    texts = SAMPLE_TEXTS * 4
    results = {}
    for cuda_graph in (False, True):
        clf = Classifier.load(artifact, precision="fp16", provider="cuda", cuda_graph=cuda_graph)
        got = clf.logits(texts)
        tokens = clf._tokenizer.encode_batch(texts)
        ref = []
        with torch.inference_mode():
            for t in tokens:
                ids = torch.tensor([t.ids], device=device)
                ref.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float().cpu().numpy())
        ref = np.concatenate(ref)  # (N, C)
        # a difference that moving each fp32 logit by the fp16 tolerance explains is a near tie
        flipped, near = disagreements(ref, got, clf.score_function, CUDA_FP16_LOGIT_ATOL)  # (N,), (N,)
        results[f"cuda_graph={cuda_graph}"] = {
            "provider": clf.provider,
            "file": _model_file(clf),
            "max_abs_logit_diff": float(np.abs(ref - got).max()),
            "argmax_agreement": float((~flipped).mean()),
            "near_tie_flips": int(near.sum()),
            "passed": bool(not (flipped & ~near).any()),
        }
    return results


def check(artifact: Path, provider: str, rounds: int, shapes=SHAPES, public: bool = True) -> dict:
    import torch

    from bert14.artifact import read_manifest
    from bert14.check.artifact import check_artifact
    from bert14.export.model import rebuild

    manifest = read_manifest(artifact)
    device = "cuda" if provider == "cuda" else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    source = rebuild(manifest.source, manifest.source.get("attn_implementation", "sdpa"))
    model = source.model.to(device)
    config = source.config
    report: dict = {"provider": provider, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}

    # Parity is `bert14 check --provider cuda`: the same loader, runners and comparator as on the CPU.
    report["parity"] = check_artifact(artifact, provider=provider)
    if device == "cuda":
        report["runtime_parity"] = runtime_parity(artifact, model, device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    half = model.half() if device == "cuda" else None  # parity is done: the fp32 copy is no longer needed
    with tempfile.TemporaryDirectory() as tmp:
        public_path = _public_fp16(Path(tmp), rebuild(manifest.source, "eager")) if public else None
        seqlen_path = _seqlen_fp16(Path(tmp), artifact) if device == "cuda" else None
        latency = {}
        for batch, sequence in shapes:
            feeds = _feeds(batch, sequence, config.vocab_size)
            runners: dict[str, Callable[[], object]] = {}
            if half is not None:
                tensors = {k: torch.from_numpy(v).to(device) for k, v in feeds.items()}
                runners["torch fp16"] = lambda t=tensors: _torch_forward(half, t)
            runners["bert14 fp32"] = Runner(artifact / "model.opt.onnx", provider, feeds)
            runners["bert14 fp16"] = Runner(artifact / "model.fp16.onnx", provider, feeds)
            if device == "cuda":
                runners["bert14 fp16+cg"] = Runner(artifact / "model.fp16.onnx", provider, feeds, cuda_graph=True)
                runners["seqlen fp16+cg"] = Runner(seqlen_path, provider, feeds, cuda_graph=True)
                runners["runtime fp16+cg"] = _runtime_runner(artifact, feeds)
                if public_path is not None:
                    runners["public fp16+cg"] = Runner(public_path, provider, feeds, cuda_graph=True)
            latency[f"{batch}x{sequence}"] = _interleaved(runners, rounds, sync)
        report["latency_ms"] = latency
    return report


def _feeds(batch: int, sequence: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 1000 + sequence)
    return {
        "input_ids": rng.integers(0, vocab, size=(batch, sequence), dtype=np.int64),
        "attention_mask": np.ones((batch, sequence), dtype=np.int64),
        "token_type_ids": np.zeros((batch, sequence), dtype=np.int64),
    }


def _torch_forward(model, tensors) -> None:
    import torch

    with torch.inference_mode():
        model(**tensors)


def print_report(report: dict) -> None:
    print(f"provider {report['provider']} on {report['device']}")
    for name, p in report.get("runtime_parity", {}).items():
        print(f"  runtime {name}: {p}")
    for name, p in report["parity"].items():
        status = "ok" if p["passed"] else "FAIL"
        print(
            f"  {name:<16} max |logit diff| {p['max_abs_logit_diff']:.2e} (tol {p['threshold']['logit_atol']:g}), "
            f"top-1 {p['top1_agreement']:.4f}, near-tie flips {p['near_tie_flips']}  {status}"
        )
    shapes = list(report["latency_ms"])
    names = list(next(iter(report["latency_ms"].values())))
    print(f"  {'median ms':<16}" + "".join(f"{s:>10}" for s in shapes))
    for name in names:
        print(f"  {name:<16}" + "".join(f"{report['latency_ms'][s][name]:>10.3f}" for s in shapes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.provider == "cuda" and not cuda_available():
        print("gpu-check: no NVIDIA GPU with onnxruntime-gpu's CUDA provider here; nothing to check.")
        return 0
    report = check(args.artifact, args.provider, args.rounds, public=args.provider == "cuda")
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    runtime_ok = all(p["passed"] for p in report.get("runtime_parity", {}).values())
    return 0 if runtime_ok and all(p["passed"] for p in report["parity"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
