"""Serving at scale, side by side in one run: one `bert14 serve` process against replicas on Ray Serve,
and the Open Inference Protocol against the /v1 route.

    .venv/bin/python benchmarks/replicas.py artifacts/bert14 --fixture artifacts/fixture --json docs/results

1. Protocol (the trained fixture, fp32, 200 THUCNews test titles): POST /v2/models/bert14/infer
   through tritonclient against POST /v1/classify on the same server: labels and scores equal.
2. Load (ARTIFACT, INT8): `bert14 serve --threads 2` (one process) and `bert14 serve --replicas 2
   --threads-per-replica 1`, each under benchmarks/loadgen.py (16 keep-alive clients, one title a
   request, --seconds), in --rounds interleaved rounds; requests/s, p50/p99, errors; and each
   server's start-up time, from the command's start until /healthz answers.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measured  # noqa: E402
from data import titles  # noqa: E402

CLI = str(Path(sys.executable).parent / "bert14")
LOADGEN = str(Path(__file__).with_name("loadgen.py"))
LAYOUTS = {
    "1 process x 2 threads": ["--threads", "2"],
    "2 replicas x 1 thread (Ray Serve)": ["--replicas", "2", "--threads-per-replica", "1"],
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(artifact: Path, *flags: str) -> Iterator[tuple[int, float]]:
    """(port, seconds until /healthz answered) of a `bert14 serve` started with `flags`."""
    import httpx

    port = _free_port()
    started = time.perf_counter()
    command = [CLI, "serve", str(artifact), "--provider", "cpu", "--port", str(port), *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{' '.join(command)} exited: {process.stderr.read()[-500:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield port, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=60)


def protocol(fixture: Path, count: int) -> dict[str, object]:
    import httpx
    import tritonclient.http as httpclient

    texts = [text for _, text in titles("test")][:count]
    with server(fixture, "--precision", "fp32", "--threads", "2") as (port, _):
        v1 = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"texts": texts}, timeout=120).json()
        tensor = httpclient.InferInput("text", [len(texts)], "BYTES")
        tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
        v2 = httpclient.InferenceServerClient(f"127.0.0.1:{port}").infer("bert14", [tensor])
    labels = [v.decode() for v in v2.as_numpy("label")]
    scores = v2.as_numpy("score")
    return {
        "texts": len(texts),
        "labels_equal": labels == [p["label"] for p in v1["predictions"]],
        "max_abs_score_diff": float(np.abs(scores - np.float32([p["score"] for p in v1["predictions"]])).max()),
    }


def load(artifact: Path, seconds: float, clients: int, rounds: int) -> dict[str, object]:
    runs: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
    for _ in range(rounds):
        for name, flags in LAYOUTS.items():
            with server(artifact, "--precision", "int8", *flags) as (port, startup):
                command = [sys.executable, LOADGEN, "--port", str(port), "--seconds", str(seconds)]
                result = json.loads(subprocess.run([*command, "--clients", str(clients)], check=True,
                                                   capture_output=True, text=True).stdout)  # fmt: skip
            runs[name].append({**result, "startup_s": round(startup, 1)})
            print(f"  {name}: {result}, start-up {startup:.1f} s", flush=True)
    summary = {}
    for name, items in runs.items():
        summary[name] = {
            key: statistics.median(r[key] for r in items)
            for key in ("requests_per_second", "p50_ms", "p99_ms", "startup_s")
        } | {"errors": sum(r["errors"] for r in items), "runs": items}
    return {"seconds": seconds, "clients": clients, "rounds": rounds, "layouts": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--fixture", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="directory to write replicas.json into")
    args = parser.parse_args()
    report = {"measured": measured(), "protocol": protocol(args.fixture, 200)}
    print(json.dumps(report["protocol"]), flush=True)
    report["load"] = load(args.artifact, args.seconds, args.clients, args.rounds)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        args.json.mkdir(parents=True, exist_ok=True)
        (args.json / "replicas.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
