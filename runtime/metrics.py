"""The HTTP server's counters, on prometheus_client, for `GET /metrics` in Prometheus' text format.

    bert14_requests_total{code}     responses by HTTP status
    bert14_texts_total              texts classified
    bert14_request_seconds          histogram: arrival to response, per request
    bert14_batch_texts              histogram: texts per predict() call (micro-batch size)
    bert14_pending_texts            gauge: texts accepted and not yet answered
    bert14_model_info{...} 1        precision, provider, score function

Each server has a registry of its own, not prometheus_client's global one: an application that embeds
the server (or runs two) keeps its own metrics apart, and nothing is registered at import. With replicas
(bert14/scale/replicas.py) each replica publishes a `snapshot()` of its families and `render_all` shows
every replica's samples under one HELP/TYPE each, with a `replica` label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.metrics_core import Metric

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "Metric", "Metrics", "render_all"]

# Seconds: a title on the CPU takes a few ms, a full micro-batch of long texts up to seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """One server's counters. Updated from its event loop (and the batcher's thread for batch sizes);
    prometheus_client's metrics take their own locks."""

    def __init__(self, info: dict[str, str]) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "bert14_requests", "Responses to POST /v1/classify and /v2/models/NAME/infer by HTTP status.",
            ["code"], registry=reg,
        )  # fmt: skip
        self.texts = Counter("bert14_texts", "Texts classified.", registry=reg)
        self.latency = Histogram(
            "bert14_request_seconds", "Time from a request's arrival to its response.",
            buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.batches = Histogram(
            "bert14_batch_texts", "Texts per model call (micro-batch size).", buckets=BATCH_BUCKETS, registry=reg
        )
        self.pending = Gauge("bert14_pending_texts", "Texts accepted and not yet answered.", registry=reg)
        Info("bert14_model", "The artifact being served.", registry=reg).info(dict(info))

    def request(self, status: int, seconds: float, texts: int) -> None:
        self.requests.labels(code=str(status)).inc()
        self.latency.observe(seconds)
        if status == 200:
            self.texts.inc(texts)

    def snapshot(self, pending: int) -> list[Metric]:
        """Every family with its samples now: plain data, picklable, to publish to another process."""
        self.pending.set(pending)
        return list(self.registry.collect())

    def render(self, pending: int) -> str:
        self.pending.set(pending)
        return generate_latest(self.registry).decode("utf-8")


class _Merged:
    """A collector over published snapshots: one family per name, each part's samples labelled."""

    def __init__(self, parts: dict[str, list[Metric]], label: str) -> None:
        self.parts = parts
        self.label = label

    def collect(self) -> list[Metric]:
        merged: dict[str, Metric] = {}
        for part, families in sorted(self.parts.items()):
            for family in families:
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type, family.unit)
                )
                into.samples += [s._replace(labels={**s.labels, self.label: part}) for s in family.samples]
        return list(merged.values())


def render_all(parts: dict[str, list[Metric]], label: str = "replica") -> str:
    """Prometheus text for several servers' snapshots ({replica: snapshot}): each metric's HELP and
    TYPE once, then every part's samples with `label` set to the part's name."""
    registry = CollectorRegistry()
    registry.register(_Merged(parts, label))  # type: ignore[arg-type]
    return generate_latest(registry).decode("utf-8")
