"""The HTTP server's counters in Prometheus' text format (`GET /metrics`), with no dependency.

    bert14_requests_total{code}     responses by HTTP status
    bert14_texts_total              texts classified
    bert14_request_seconds          histogram: arrival to response, per request
    bert14_batch_texts              histogram: texts per predict() call (micro-batch size)
    bert14_pending_texts            gauge: texts accepted and not yet answered
    bert14_model_info{...} 1        precision, provider, score function

Everything is updated from the server's event loop, one thread, so no lock is needed. With replicas
(bert14/scale/replicas.py) every series also carries a `replica` label, and any replica's /metrics
shows them all.
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

    def lines(self, name: str, labels: str = "") -> list[str]:
        """The histogram's series; `labels` ('replica="a"') is added to every one."""
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {n}' for b, n in zip(self.bounds, self.counts, strict=True)]
        plain = f"{{{labels}}}" if labels else ""
        return [
            *out,
            f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}',
            f"{name}_sum{plain} {self.total:.6f}",
            f"{name}_count{plain} {self.count}",
        ]


HEADERS = {
    "bert14_requests_total": ("counter", "Responses to POST /v1/classify and /v2/models/NAME/infer by HTTP status."),
    "bert14_texts_total": ("counter", "Texts classified."),
    "bert14_request_seconds": ("histogram", "Time from a request's arrival to its response."),
    "bert14_batch_texts": ("histogram", "Texts per model call (micro-batch size)."),
    "bert14_pending_texts": ("gauge", "Texts accepted and not yet answered."),
    "bert14_model_info": ("gauge", "The artifact being served."),
}


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

    def series(self, pending: int, labels: dict[str, str] | None = None) -> dict[str, list[str]]:
        """Each metric's sample lines, every one carrying `labels` (e.g. the replica)."""
        extra = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted((labels or {}).items()))
        sep, plain = ("," if extra else ""), (f"{{{extra}}}" if extra else "")
        info = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted({**self.info, **(labels or {})}.items()))
        return {
            "bert14_requests_total": [
                f'bert14_requests_total{{{extra}{sep}code="{code}"}} {n}' for code, n in sorted(self.requests.items())
            ],
            "bert14_texts_total": [f"bert14_texts_total{plain} {self.texts}"],
            "bert14_request_seconds": self.latency.lines("bert14_request_seconds", extra),
            "bert14_batch_texts": self.batches.lines("bert14_batch_texts", extra),
            "bert14_pending_texts": [f"bert14_pending_texts{plain} {pending}"],
            "bert14_model_info": [f"bert14_model_info{{{info}}} 1"],
        }

    def render(self, pending: int) -> str:
        return render_all([self.series(pending)])


def render_all(parts: list[dict[str, list[str]]]) -> str:
    """Prometheus text for the series of one server or of several replicas: each metric's HELP and
    TYPE once, then every part's samples."""
    lines = []
    for name, (kind, help_text) in HEADERS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for part in parts:
            lines += part[name]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
