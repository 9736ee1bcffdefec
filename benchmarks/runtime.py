"""The runtime on real text and under load (figures in docs/numbers.md).

1. `import bert14.runtime` time, and load + first prediction time for the artifact's INT8 model
   (fresh interpreters, medians of 5).
2. Real-text throughput on the 1,000 THUCNews test titles, INT8, 2 threads: the runtime
   (length buckets, each padded to its own longest row) vs the common naive recipe (batches of
   32 in the given order, every batch padded to 128 tokens), same session; labels compared.
3. The HTTP server under load: 16 concurrent clients for 30 s on loopback, one title per request,
   with micro-batching and without; requests/s, p50/p99 latency, errors. The clients are
   benchmarks/loadgen.py, in a process of their own (hand-written HTTP on one asyncio loop, so
   they take as little of the 2 cores from the server as a load generator can).

4. (--fairness N, alone) a one-title request's latency while one request of N 512-token texts runs.
5. (--crowd N [N ...], alone) a title's latency beside N clients sending texts of 17 windows each.

    .venv/bin/python benchmarks/runtime.py [ARTIFACT] [--seconds 30] [--clients 16] [--json F]
    .venv/bin/python benchmarks/runtime.py [ARTIFACT] --fairness 64
    .venv/bin/python benchmarks/runtime.py [ARTIFACT] --crowd 3 12
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
from common import measured
from data import titles

PYTHON = sys.executable


def _fresh(code: str, runs: int = 5) -> float:
    values = []
    for _ in range(runs):
        out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
        values.append(float(out.strip().splitlines()[-1]))
    return statistics.median(values)


def startup(artifact: Path) -> dict[str, float]:
    import_s = _fresh("import time; t = time.perf_counter(); import bert14.runtime; print(time.perf_counter() - t)")
    first_s = _fresh(
        "import time; t = time.perf_counter(); from bert14.runtime import Classifier; "
        f"c = Classifier.load({str(artifact)!r}, precision='int8', provider='cpu', threads=2, warmup=False); "
        "c.predict(['央行宣布降准0.5个百分点']); print(time.perf_counter() - t)"
    )
    return {"import_s": round(import_s, 3), "import_load_first_prediction_s": round(first_s, 3)}


def throughput(artifact: Path, rounds: int = 3) -> dict[str, object]:
    from bert14.encode import Batch
    from bert14.runtime import Classifier

    clf = Classifier.load(artifact, precision="int8", provider="cpu", threads=2, spinning=False)
    texts = [text for _, text in titles("test")]

    def naive() -> np.ndarray:  # batches of 32 in order, each padded (and cut) to 128 tokens
        clf._tokenizer.enable_truncation(max_length=128)  # type: ignore[attr-defined]
        clf._tokenizer.enable_padding(length=128, pad_id=clf._pad_id)  # type: ignore[attr-defined]
        try:
            out = []
            for start in range(0, len(texts), 32):
                encodings = clf._tokenizer.encode_batch(texts[start : start + 32])  # type: ignore[attr-defined]
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                batch = Batch(
                    list(range(len(encodings))),
                    ids,
                    np.array([e.attention_mask for e in encodings], dtype=np.int64),
                    np.array([e.type_ids for e in encodings], dtype=np.int64),
                )
                out.append(clf._forward(batch))
            return np.concatenate(out)
        finally:
            clf._tokenizer.no_padding()  # type: ignore[attr-defined]

    timings: dict[str, list[float]] = {"bucketed": [], "padded to 128": []}
    results = {}
    for _ in range(rounds):
        for name, run in (("bucketed", lambda: clf.logits(texts)), ("padded to 128", naive)):
            started = time.perf_counter()
            results[name] = run()
            timings[name].append(time.perf_counter() - started)
    per_second = {name: len(texts) / statistics.median(values) for name, values in timings.items()}
    same = results["bucketed"].argmax(-1) == results["padded to 128"].argmax(-1)
    return {
        "texts": len(texts),
        "texts_per_second": {k: round(v, 1) for k, v in per_second.items()},
        "speedup": round(per_second["bucketed"] / per_second["padded to 128"], 2),
        "identical_labels": int(same.sum()),
    }


def batching_gain(artifact: Path, sizes: tuple[int, ...] = (1, 4, 16, 64), count: int = 320) -> dict[int, float]:
    """Titles per second through Classifier.predict, fed `size` titles per call: how much the
    model itself gains from batching, the ceiling for the server's micro-batching."""
    from bert14.runtime import Classifier

    clf = Classifier.load(artifact, precision="int8", provider="cpu", threads=2, spinning=False)
    texts = [text for _, text in titles("test")][:count]
    out = {}
    for size in sizes:
        started = time.perf_counter()
        for start in range(0, len(texts), size):
            clf.predict(texts[start : start + size])
        out[size] = round(len(texts) / (time.perf_counter() - started), 1)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(artifact: Path, *flags: str) -> Iterator[str]:
    """`bert14 serve` (INT8, CPU, 2 threads) in a process of its own; yields its base URL once
    /healthz answers, and stops it afterwards."""
    import httpx

    port = _free_port()
    command = [PYTHON, "-m", "bert14.commands.cli", "serve", str(artifact), "--precision", "int8", "--provider", "cpu"]
    command += ["--threads", "2", "--port", str(port), *flags]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def load_test(artifact: Path, microbatch: bool, seconds: float, clients: int, window_ms: float) -> dict[str, object]:
    flags = ["--window-ms", str(window_ms)] if microbatch else ["--no-microbatch"]
    with running_server(artifact, *flags) as base:
        port = base.rsplit(":", 1)[1]
        generator = [PYTHON, str(Path(__file__).with_name("loadgen.py")), "--port", port]
        generator += ["--seconds", str(seconds), "--clients", str(clients)]
        result = json.loads(subprocess.run(generator, check=True, capture_output=True, text=True).stdout)
    return {"microbatch": microbatch, **result}


def fairness(artifact: Path, long_texts: int) -> dict[str, object]:
    """One request of `long_texts` texts of 512 tokens, and one title sent 0.5 s after the server
    has accepted it: how long each takes. A server that runs requests whole makes the title wait
    for all of the large one."""
    import asyncio

    import httpx

    async def scenario(base: str) -> dict[str, object]:
        async with httpx.AsyncClient(base_url=base, timeout=600) as client:

            async def timed(body: dict) -> float:
                started = time.perf_counter()
                response = await client.post("/v1/classify", json=body)
                response.raise_for_status()
                return time.perf_counter() - started

            big = asyncio.create_task(timed({"texts": ["经济运行总体平稳，主要指标好于预期。" * 40] * long_texts}))
            # The title goes once the large request is accepted and running (its texts are pending).
            while f"bert14_pending_texts {long_texts}" not in (await client.get("/metrics")).text:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            title_s = await timed({"texts": ["湖人主场险胜勇士"]})
            return {"long_texts": long_texts, "large_request_s": round(await big, 3), "title_s": round(title_s, 3)}

    with running_server(artifact) as base:
        return asyncio.run(scenario(base))


def crowd(artifact: Path, clients: int, titles_sent: int = 10) -> dict[str, object]:
    """`clients` clients each sending one text of 17 windows of 512 tokens after another, and a title
    every 0.7 s beside them: the title's latency against its latency alone. The scheduler's bound is
    the run in progress, however many long requests are queued (docs/runtime.md)."""
    import asyncio

    import httpx

    long_text = {"strategy": "windows", "stride": 510, "max_windows": 17}
    article = "经济运行总体平稳，主要指标好于预期。" * 480  # over 17 windows of 510 tokens

    async def scenario(base: str) -> dict[str, object]:
        async with httpx.AsyncClient(base_url=base, timeout=600) as client:

            async def timed(body: dict) -> float:
                started = time.perf_counter()
                (await client.post("/v1/classify", json=body)).raise_for_status()
                return time.perf_counter() - started

            title = {"texts": ["湖人主场险胜勇士"]}
            alone = [await timed(title) for _ in range(5)]
            stop = asyncio.Event()
            longs: list[float] = []

            async def sender() -> None:
                while not stop.is_set():
                    longs.append(await timed({"texts": [article], "long_text": long_text}))

            senders = [asyncio.create_task(sender()) for _ in range(clients)]
            await asyncio.sleep(6)  # every sender's request queued or running
            busy = []
            for _ in range(titles_sent):
                busy.append(await timed(title))
                await asyncio.sleep(0.7)
            stop.set()
            await asyncio.gather(*senders)
            return {"clients": clients, "title_alone_s": round(statistics.median(alone), 3),
                    "title_median_s": round(statistics.median(busy), 3), "title_max_s": round(max(busy), 3),
                    "long_request_median_s": round(statistics.median(longs), 3)}  # fmt: skip

    with running_server(artifact) as base:
        return asyncio.run(scenario(base))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", nargs="?", default="artifacts/bert14", type=Path)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--labels-artifact", type=Path, help="a trained model's artifact to compare labels on")
    parser.add_argument("--window-ms", type=float, default=5.0, help="the server's micro-batching window")
    parser.add_argument("--server-only", action="store_true", help="only the load test (part 3)")
    parser.add_argument(
        "--fairness", type=int, metavar="N", help="only: a title's latency behind one request of N 512-token texts"
    )
    parser.add_argument(
        "--crowd", type=int, nargs="+", metavar="N", help="only: a title's latency beside N clients of 17-window texts"
    )
    args = parser.parse_args()
    if args.crowd:
        rows = [crowd(args.artifact, n) for n in args.crowd]
        for row in rows:
            print(json.dumps(row))
        if args.json:
            args.json.write_text(json.dumps({"measured": measured(), "crowd": rows}, indent=2))
        return 0
    if args.fairness:
        result = fairness(args.artifact, args.fairness)
        print(json.dumps(result))
        if args.json:
            args.json.write_text(json.dumps({"measured": measured(), "fairness": result}, indent=2))
        return 0
    report: dict[str, object] = {"measured": measured()}
    if not args.server_only:
        report |= {"startup": startup(args.artifact), "throughput": throughput(args.artifact)}
        print(json.dumps(report["startup"]))
        print(json.dumps(report["throughput"], ensure_ascii=False))
        if args.labels_artifact is not None:
            # Random weights give near-tied logits, and INT8's per-tensor activation scales move
            # with the batch's padding, so label identity is measured on the trained fixture too.
            report["throughput_trained"] = throughput(args.labels_artifact)
            print("trained fixture:", json.dumps(report["throughput_trained"], ensure_ascii=False))
        report["batching_gain_titles_per_second"] = batching_gain(args.artifact)
        print("titles/s by titles per predict() call:", report["batching_gain_titles_per_second"])
    report["server"] = [
        load_test(args.artifact, mb, args.seconds, args.clients, args.window_ms) for mb in (True, False)
    ]
    for row in report["server"]:
        print(json.dumps(row))
    with_mb, without = report["server"]
    if without["requests_per_second"]:
        print(f"micro-batching: {with_mb['requests_per_second'] / without['requests_per_second']:.2f}x the requests/s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
