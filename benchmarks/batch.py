"""`bert14 batch` against `bert14 predict --file`, side by side in one run: labels, throughput, memory.

    .venv/bin/python benchmarks/batch.py artifacts/bert14 --fixture artifacts/fixture --json docs/results

1. Labels (the trained fixture, the 1,000 THUCNews test titles): `bert14 batch --probs` against
   `Classifier.predict` in one process; fp32 must agree to 1e-5, INT8 within the check harness's
   INT8 tolerance (dynamic INT8 scales depend on which rows share a batch).
2. Throughput (ARTIFACT, 20,000 training titles): wall time of each command from start to exit,
   model load and Ray start-up included, interleaved over --rounds; the ratio is of medians.
3. Scale (the fixture, 200,000 rows: the titles repeated under distinct ids): completes exactly once
   and its peak memory, against a 20,000-row run of the same: streaming means it does not grow.

Peak memory is the largest sum of PSS over the command's whole process tree (the Ray processes it
starts included; a page shared by k processes counts 1/k in each), sampled every 100 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measured  # noqa: E402
from data import titles  # noqa: E402

CLI = Path(sys.executable).parent / "bert14"
THREADS = 2


def _memory(pid: int, fallback_rss: int) -> int:
    """Bytes of PSS (proportional set size: a page shared by k processes counts 1/k in each), so
    that summing over Ray's processes does not count the shared libraries once per process."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return fallback_rss


def _tree_memory(root: int) -> int:
    """Bytes of memory (PSS) of `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * 4096
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in rss:
            total += _memory(pid, rss[pid])
        todo += children.get(pid, [])
    return total


def run(command: list[str]) -> dict[str, float]:
    """Wall seconds and peak memory (PSS over the process tree) of one command, which must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_memory(process.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {stderr.strip()[-500:]}")
    return {"seconds": seconds, "peak_mb": peak[0] / 2**20}


def predict_cmd(artifact: Path, path: Path) -> list[str]:
    return [str(CLI), "predict", str(artifact), "--file", str(path), "--threads", str(THREADS), "--quiet"]


def batch_cmd(artifact: Path, path: Path, out: Path, workers: int, threads: int, *extra: str) -> list[str]:
    return [str(CLI), "batch", str(artifact), "--input", str(path), "--output", str(out), "--quiet",
            "--workers", str(workers), "--threads-per-worker", str(threads), *extra]  # fmt: skip


def _table(out: Path) -> pa.Table:
    manifest = json.loads((out / "_bert14_batch.json").read_text(encoding="utf-8"))
    return pa.concat_tables([pq.read_table(out / name) for name in manifest["files"]]).sort_by("id")


def labels(fixture: Path, tmp: Path) -> dict[str, object]:
    from bert14.check.compare import THRESHOLDS
    from bert14.runtime import Classifier

    texts = [text for _, text in titles("test")]
    path = tmp / "test.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    report: dict[str, object] = {"rows": len(texts)}
    for precision in ("fp32", "int8"):
        out = tmp / f"labels-{precision}"
        run(batch_cmd(fixture, path, out, 2, 1, "--precision", precision, "--probs"))
        table = _table(out)
        clf = Classifier.load(fixture, precision=precision, provider="cpu", threads=THREADS)
        expected = clf.predict(texts)
        top2 = np.sort(clf.logits(texts), axis=1)[:, -2:]  # (N, 2)
        near_tie = (top2[:, 1] - top2[:, 0]) < 2 * THRESHOLDS["cpu"][precision].logit_atol  # (N,)
        names = list(expected[0].probs)
        got = np.array([[row[n] for n in names] for row in table.column("probs").to_pylist()])
        want = np.array([[p.probs[n] for n in names] for p in expected])
        same = [a == p.label for a, p in zip(table.column("label").to_pylist(), expected, strict=True)]
        report[precision] = {
            "label_agreement": sum(same) / len(same),
            "flips_not_near_ties": int(sum(1 for ok, tie in zip(same, near_tie, strict=True) if not ok and not tie)),
            "max_abs_prob_diff": float(np.abs(got - want).max()),
            "ids_exactly_once": table.column("id").to_pylist() == list(range(1, len(texts) + 1)),
        }
    report["int8_logit_atol"] = THRESHOLDS["cpu"]["int8"].logit_atol
    return report


def throughput(artifact: Path, tmp: Path, rows: int, rounds: int) -> dict[str, object]:
    texts = [text for _, text in titles("train")][:rows]
    path = tmp / "titles.txt"
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    commands = {
        "predict --file (1 process, 2 threads)": lambda: predict_cmd(artifact, path),
        "batch, 2 workers x 1 thread": lambda: batch_cmd(artifact, path, tmp / "tp-2x1", 2, 1),
        "batch, 1 worker x 2 threads": lambda: batch_cmd(artifact, path, tmp / "tp-1x2", 1, 2),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            runs[name].append(run(command()))
            print(f"  {name}: {runs[name][-1]['seconds']:.1f} s", flush=True)
    out = {}
    for name, items in runs.items():
        seconds = statistics.median(r["seconds"] for r in items)
        out[name] = {
            "seconds": seconds,
            "rows_per_s": rows / seconds,
            "peak_mb": max(r["peak_mb"] for r in items),
            "all_seconds": [round(r["seconds"], 2) for r in items],
        }
    return {"rows": rows, "rounds": rounds, "runs": out}


def scale(fixture: Path, tmp: Path, rows: int) -> dict[str, object]:
    texts = [text for _, text in titles("train")]
    report: dict[str, object] = {}
    for n in (rows // 10, rows):
        path = tmp / f"scale-{n}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for i in range(n):
                handle.write(json.dumps({"id": f"r{i}", "text": texts[i % len(texts)]}, ensure_ascii=False) + "\n")
        in_memory = pa.table({"id": [f"r{i}" for i in range(n)], "text": [texts[i % len(texts)] for i in range(n)]})
        out = tmp / f"scale-out-{n}"
        result = run(batch_cmd(fixture, path, out, 2, 1))
        ids = _ids(out)
        report[str(n)] = {
            **result,
            "rows_per_s": n / result["seconds"],
            "input_mb_in_memory": in_memory.nbytes / 2**20,
            "input_mb_on_disk": path.stat().st_size / 2**20,
            "exactly_once": len(ids) == n and len(set(ids)) == n,
        }
        print(f"  scale {n}: {result['seconds']:.1f} s, peak {result['peak_mb']:.0f} MB", flush=True)
    return report


def _ids(out: Path) -> list[str]:
    manifest = json.loads((out / "_bert14_batch.json").read_text(encoding="utf-8"))
    return [i for name in manifest["files"] for i in pq.read_table(out / name, columns=["id"]).column("id").to_pylist()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, help="artifact for the throughput run (the default BERT-14)")
    parser.add_argument("--fixture", type=Path, required=True, help="artifact of the trained fixture")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--scale-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="directory to write batch.json into")
    parser.add_argument("--skip", action="append", default=[], choices=("labels", "throughput", "scale"))
    args = parser.parse_args()
    report: dict[str, object] = {"measured": measured(), "threads": THREADS}
    with tempfile.TemporaryDirectory(prefix="bert14-batch-bench-") as tmp:
        if "labels" not in args.skip:
            report["labels"] = labels(args.fixture, Path(tmp))
            print(json.dumps(report["labels"], indent=2), flush=True)
        if "throughput" not in args.skip:
            report["throughput"] = throughput(args.artifact, Path(tmp), args.rows, args.rounds)
        if "scale" not in args.skip:
            report["scale"] = scale(args.fixture, Path(tmp), args.scale_rows)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        args.json.mkdir(parents=True, exist_ok=True)
        (args.json / "batch.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
