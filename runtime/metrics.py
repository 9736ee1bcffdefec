"""The HTTP server's counters in Prometheus' text format (`GET /metrics`), with no dependency.

    bert14_requests_total{code}     responses by HTTP status
    bert14_texts_total              texts classified
    bert14_request_seconds          histogram: arrival to response, per request
    bert14_batch_texts              histogram: texts per predict() call (micro-batch size)
    bert14_pending_texts            gauge: texts accepted and not yet answered
    bert14_model_info{...} 1        precision, provider, score function

Everything is updated from the server's event loop, one thread, so no lock is needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Seconds: a title on the CPU takes a few ms, a full micro-batch of long texts up to seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{bound:g}"}} {n}' for bound, n in zip(self.bounds, self.counts, strict=True)]
        return [
            *out,
            f'{name}_bucket{{le="+Inf"}} {self.count}',
            f"{name}_sum {self.total:.6f}",
            f"{name}_count {self.count}",
        ]


@dataclass
class Metrics:
    info: dict[str, str]
    requests: Counter = field(default_factory=Counter)
    texts: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batches: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))

    def request(self, status: int, seconds: float, texts: int) -> None:
        self.requests[status] += 1
        self.latency.observe(seconds)
        if status == 200:
            self.texts += texts

    def render(self, pending: int) -> str:
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(self.info.items()))
        lines = [
            "# HELP bert14_requests_total Responses to POST /v1/classify and /v2/models/NAME/infer by HTTP status.",
            "# TYPE bert14_requests_total counter",
            *(f'bert14_requests_total{{code="{code}"}} {n}' for code, n in sorted(self.requests.items())),
            "# HELP bert14_texts_total Texts classified.",
            "# TYPE bert14_texts_total counter",
            f"bert14_texts_total {self.texts}",
            "# HELP bert14_request_seconds Time from a request's arrival to its response.",
            "# TYPE bert14_request_seconds histogram",
            *self.latency.lines("bert14_request_seconds"),
            "# HELP bert14_batch_texts Texts per model call (micro-batch size).",
            "# TYPE bert14_batch_texts histogram",
            *self.batches.lines("bert14_batch_texts"),
            "# HELP bert14_pending_texts Texts accepted and not yet answered.",
            "# TYPE bert14_pending_texts gauge",
            f"bert14_pending_texts {pending}",
            "# HELP bert14_model_info The artifact being served.",
            "# TYPE bert14_model_info gauge",
            f"bert14_model_info{{{labels}}} 1",
        ]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
