"""One text, one answer: a text's scores are the same bits alone and inside any batch the runtime makes.

A seeded property over batch compositions, orders, lengths and the runtime's batch limits, for every CPU
engine and precision; the per-tensor INT8 graph that was the default before (one activation scale over the
whole batch, padding included) must fail it. Then the server: texts sent by concurrent clients, which the
micro-batcher runs together, get bit for bit what `predict([text])` gives.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bert14.artifact import INT8_FILE
from bert14.runtime import Classifier

ENGINES = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8")]
ALPHABET = "央行宣布降准湖人主场险胜勇士新款折叠屏手机发布北京二手房成交量上涨 ，。!?abcXYZ0123"
LIMITS = [(1, 8192), (3, 8192), (8, 8192), (32, 8192), (32, 600), (4, 200)]  # (max_batch, max_tokens)


def _texts():
    from hypothesis import strategies as st

    short = st.text(ALPHABET, max_size=24)
    repeated = st.builds(lambda unit, n: unit * n, st.text(ALPHABET, min_size=1, max_size=6), st.integers(1, 200))
    return st.lists(short | short | repeated, min_size=1, max_size=12)  # some past 512 tokens: truncated


def _same_bits_alone_and_batched(clf: Classifier, texts: list[str], limits: tuple[int, int]) -> None:
    max_batch, max_tokens = limits
    batched = replace(clf, options=replace(clf.options, max_batch=max_batch, max_tokens=max_tokens)).logits(texts)
    for i, text in enumerate(texts):
        alone = clf.logits([text])[0]
        assert np.array_equal(batched[i], alone), (
            f"{clf.engine} {clf.precision}: text {i} of {len(texts)} ({len(text)} chars) moved by "
            f"{np.abs(batched[i] - alone).max():.3g} when batched with max_batch={max_batch}, max_tokens={max_tokens}"
        )


def _property(clf: Classifier, examples: int):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # the first counterexample is enough; no shrinking
        suppress_health_check=list(HealthCheck),
    )
    @given(_texts(), st.sampled_from(LIMITS), st.randoms(use_true_random=False))
    def run(texts, limits, random) -> None:
        random.shuffle(texts)
        _same_bits_alone_and_batched(clf, texts, limits)

    return run


@pytest.mark.parametrize(("engine", "precision"), ENGINES, ids=[f"{e}-{p}" for e, p in ENGINES])
def test_a_text_gets_the_same_bits_whatever_its_batch(tiny_artifact: Path, engine: str, precision: str) -> None:
    clf = Classifier.load(tiny_artifact, engine=engine, precision=precision, provider="cpu", threads=1)
    _property(clf, examples=100)()


def test_the_per_tensor_int8_graph_fails_the_property(tiny_artifact: Path, tmp_path: Path) -> None:
    """The property can fail: on the graph that was the default, one scale per activation tensor."""
    from bert14.artifact import cpu_flags
    from bert14.quantize.dynamic import DynamicOptions, quantize_dynamic_int8

    old = tmp_path / "per_tensor"
    shutil.copytree(tiny_artifact, old)
    options = DynamicOptions(activations="per_tensor")
    quantize_dynamic_int8(tiny_artifact / "model.opt.onnx", old / INT8_FILE, options, cpu_flags())
    clf = Classifier.load(old, precision="int8", provider="cpu", threads=1, verify=False)  # the file differs
    with pytest.raises(AssertionError, match="moved by"):
        _property(clf, examples=100)()


def test_concurrent_clients_get_the_bits_a_text_gets_alone(tiny_artifact: Path) -> None:
    httpx = pytest.importorskip("httpx")
    from bert14.runtime.server import ServerOptions, create_app

    clf = Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1)
    rng = np.random.default_rng(26)
    texts = ["".join(rng.choice(list(ALPHABET), size=int(n))) for n in rng.integers(1, 300, size=48)]
    requests = [texts[i : i + n] for i, n in zip(range(0, 48, 3), rng.integers(1, 4, size=16), strict=False)]
    sizes: list[int] = []
    original = clf.predict_buckets

    def counting(rows):
        sizes.append(len(rows))
        return original(rows)

    clf.predict_buckets = counting  # type: ignore[method-assign]
    app = create_app(clf, ServerOptions(window_ms=30, max_batch_texts=16, max_batch_tokens=2048))

    async def scenario() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as client:
                replies = await asyncio.gather(*(client.post("/v1/classify", json={"texts": r}) for r in requests))
        assert [r.status_code for r in replies] == [200] * len(requests)
        return [p for r in replies for p in r.json()["predictions"]]

    served = asyncio.run(scenario())
    assert max(sizes) > 3, f"the clients' texts never shared a run: {sizes}"
    sent = [t for r in requests for t in r]
    for text, got in zip(sent, served, strict=True):
        alone = clf.predict([text])[0].to_dict()
        assert got["probs"] == alone["probs"] and got["label"] == alone["label"], text
