"""A light HTTP load generator for `bert14 serve`: N keep-alive clients on one asyncio loop.

Each client sends POST /v1/classify with one THUCNews test title, waits for the answer, and sends
the next, until the time is up. Requests are written and answers parsed by hand (status line,
Content-Length, body): a few microseconds of client CPU per request, where an HTTP library in
Python threads costs about a millisecond and on a 2-core machine takes that time from the server
it is measuring. It runs in its own process (benchmarks/runtime.py starts it) and prints one JSON
line: requests, errors, requests/s, p50/p99 latency.

    .venv/bin/python benchmarks/loadgen.py --port 8014 [--seconds 30] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np
from data import titles


async def _client(port: int, bodies: list[bytes], seed: int, stop_at: float, latencies: list[float]) -> int:
    rng = np.random.default_rng(seed)
    errors = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            body = bodies[int(rng.integers(len(bodies)))]
            started = time.perf_counter()
            writer.write(
                b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answer = await reader.readexactly(length)
            if status == 200 and answer.startswith(b'{"predictions":'):
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
        errors += 1  # a dropped connection or a malformed answer ends this client
    finally:
        writer.close()
    return errors


async def run(port: int, seconds: float, clients: int) -> dict[str, object]:
    bodies = [json.dumps({"texts": [text]}, ensure_ascii=False).encode() for _, text in titles("test")]
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(*(_client(port, bodies, seed, stop_at, latencies) for seed in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": int(sum(errors)),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.port, args.seconds, args.clients))))


if __name__ == "__main__":
    main()
