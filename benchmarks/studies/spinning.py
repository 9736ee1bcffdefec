"""ONNX Runtime's thread spinning: latency and the CPU it burns, and whether it moves the INT8 ratio.

1. One session at a time (2 threads, the artifact's INT8 model, batch 1 x 32): 20 runs with a
   50 ms idle gap after each, as a server between requests. Median run time and the process's
   CPU time over the whole stretch, for ONNX Runtime's default (threads keep spinning after a run),
   spinning only while a run is in progress (`session.force_spinning_stop`, the runtime's
   default) and no spinning.
2. Interleaved at 1 x 128: the public recipe's INT8 and bert14's, each with spinning off and with
   spinning only while running, to show whether the benchmarks' spinning-off setting favours one.

    .venv/bin/python benchmarks/studies/spinning.py [ARTIFACT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, data.py

from common import bert_feeds, interleaved, public_recipe  # noqa: E402

MODES = ("default spinning", "spin while running", "no spinning")


def _session(path: Path, mode: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if mode == "spin while running":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    elif mode == "no spinning":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def idle_cost(model: Path, runs: int = 20, gap_s: float = 0.05) -> dict[str, dict[str, float]]:
    feeds = bert_feeds(1, 32)
    out = {}
    for mode in MODES:
        session = _session(model, mode)
        for _ in range(3):
            session.run(None, feeds)
        cpu, wall, times = time.process_time(), time.perf_counter(), []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, feeds)
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(gap_s)
        share = (time.process_time() - cpu) / (time.perf_counter() - wall)
        out[mode] = {"median_ms": round(statistics.median(times), 2), "cpu_share_of_one_core": round(share, 2)}
        del session
    return out


def ratio(model: Path) -> dict[str, float]:
    from bert14.export.model import build_default

    with tempfile.TemporaryDirectory() as tmp:
        _, recipe = public_recipe(build_default(attn="eager").model, Path(tmp), 12, 768)
        feeds = bert_feeds(1, 128)
        sessions = {
            f"{name} {mode}": _session(path, mode)
            for name, path in (("recipe", recipe), ("bert14", model))
            for mode in ("no spinning", "spin while running")
        }
        timings = interleaved({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, 20)
    return {name: round(t.median_ms, 2) for name, t in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", nargs="?", default="artifacts/bert14", type=Path)
    args = parser.parse_args()
    model = args.artifact / "model.int8.onnx"
    for mode, row in idle_cost(model).items():
        share = 100 * row["cpu_share_of_one_core"]
        print(f"{mode:<20} median {row['median_ms']:6.2f} ms   CPU {share:3.0f}% of a core")
    medians = ratio(model)
    for name, ms in medians.items():
        print(f"1x128 {name:<28} {ms:7.2f} ms")
    for mode in ("no spinning", "spin while running"):
        print(f"recipe / bert14, {mode}: {medians[f'recipe {mode}'] / medians[f'bert14 {mode}']:.3f}")


if __name__ == "__main__":
    main()
