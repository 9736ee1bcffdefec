"""Where an fp16 artifact's GPU time goes: every CUDA kernel of a run, timed by CUPTI.

`gpu_check.py` gives end-to-end medians; this says what they are made of, so that a session with a
borrowed GPU can decide what to cut. The profiler inside onnxruntime-gpu's wheels times nodes on
the host (their launches), not kernels; torch.profiler's CUPTI tracing records every kernel the
process launches, ONNX Runtime's included, and its Chrome trace lists them even when no PyTorch op
surrounds them, so the kernels are read from that trace.

For each model and shape: one session with IO binding (and a CUDA graph unless --no-cuda-graph),
warmed up, then RUNS runs under the profiler. Printed per model and shape: kernels per run, GPU
busy time per run (kernels, copies and memsets), and the kernels grouped by name, with their count
and microseconds per run. Models: the artifact's model.fp16.seqlen.onnx and model.fp16.onnx, and
with --public ONNX Runtime's own fp16 configuration of the same source (as in gpu_check.py).
Without a GPU it says so and exits 0; `--provider cpu` runs the plumbing on the CPU provider
(no kernels to see), which is how it is tested.

    python benchmarks/gpu_profile.py ARTIFACT [--shapes 1x128,32x128] [--runs 20] [--top 20]
                                              [--public] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

from gpu_check import Runner, _feeds, _public_fp16, cuda_available

GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")  # Kineto's names for device-side work
NAME_CHARS = 100  # kernel names are long C++ templates; the head tells them apart


def summarize(trace_events: list[dict], runs: int, top: int) -> dict:
    """Per-run figures from a Chrome trace's events: every device-side event counts as GPU work."""
    gpu = [e for e in trace_events if e.get("cat", "").lower() in GPU_CATEGORIES and "dur" in e]
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for event in gpu:
        by_name[event["name"][:NAME_CHARS]].append(float(event["dur"]))  # us
    busy = sum(sum(durations) for durations in by_name.values())
    rows = sorted(by_name.items(), key=lambda item: -sum(item[1]))
    return {
        "kernels_per_run": sum(1 for e in gpu if e["cat"].lower() == "kernel") / runs,
        "gpu_us_per_run": busy / runs,
        "by_name": [
            {
                "name": name,
                "count_per_run": len(durations) / runs,
                "us_per_run": sum(durations) / runs,
                "share": sum(durations) / busy,
            }
            for name, durations in rows[:top]
        ],
    }


def profile_runner(run, runs: int, top: int, provider: str) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):  # the first runs capture the CUDA graph and settle the allocator
        run()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if provider == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(runs):
            run()
        if provider == "cuda":
            torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())
    return summarize(events.get("traceEvents", events) if isinstance(events, dict) else events, runs, top)


def models(artifact: Path, public: bool, workdir: Path) -> dict[str, Path]:
    found = {name: artifact / name for name in ("model.fp16.seqlen.onnx", "model.fp16.onnx")}
    found = {name: path for name, path in found.items() if path.is_file()}
    if public:
        from bert14.artifact import read_manifest
        from bert14.export.model import rebuild

        found["public fp16"] = _public_fp16(workdir, rebuild(read_manifest(artifact).source, "eager"))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--shapes", default="1x128,32x128", help="comma-separated BATCHxSEQUENCE")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--public", action="store_true", help="also profile ONNX Runtime's own fp16 configuration")
    parser.add_argument("--no-cuda-graph", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(shape) != 2 or min(shape) < 1 for shape in shapes):
        parser.error(f"--shapes: expected e.g. 1x128,32x128, got {args.shapes!r}")
    if args.provider == "cuda" and not cuda_available():
        print("gpu-profile: no NVIDIA GPU with onnxruntime-gpu's CUDA provider here; nothing to profile.")
        return 0
    config = json.loads((args.artifact / "config.json").read_text())
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in models(args.artifact, args.public, Path(tmp)).items():
            for batch, sequence in shapes:
                feeds = _feeds(batch, sequence, config["vocab_size"])
                graph = args.provider == "cuda" and not args.no_cuda_graph
                runner = Runner(path, args.provider, feeds, cuda_graph=graph)
                summary = profile_runner(runner, args.runs, args.top, args.provider)
                report[f"{name} {batch}x{sequence}"] = summary
                print(
                    f"{name} at {batch} x {sequence}{' (CUDA graph)' if graph else ''}: "
                    f"{summary['kernels_per_run']:.0f} kernels, {summary['gpu_us_per_run']:.1f} us of GPU work a run"
                )
                if args.provider == "cuda" and not summary["kernels_per_run"]:
                    print("  no kernels in the trace: CUPTI recorded none (torch without CUDA, or tracing off?)")
                for row in summary["by_name"]:
                    print(
                        f"  {row['us_per_run']:8.1f} us {100 * row['share']:5.1f}%  "
                        f"x{row['count_per_run']:<5g} {row['name']}"
                    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
