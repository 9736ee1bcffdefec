from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SHAPE

from bert14.errors import ArtifactError, InputError
from bert14.runtime import Classifier

TEXTS = ["央行宣布降准0.5个百分点", "湖人队主场击败勇士", "", "   ", "科技公司发布新款手机" * 3]


@pytest.fixture(scope="module")
def clf(tiny_artifact: Path) -> Classifier:
    return Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1)


def test_predict_returns_one_object_per_text(clf: Classifier) -> None:
    predictions = clf.predict(TEXTS)
    assert len(predictions) == len(TEXTS)
    for p in predictions:
        assert p.label in clf.labels and p.probs[p.label] == p.score
        assert abs(sum(p.probs.values()) - 1) < 1e-5 and set(p.probs) == set(clf.labels)
    assert predictions[2].tokens == 2 and predictions[3].tokens == 2, "empty text is [CLS] [SEP]"


def test_bucketed_batches_equal_one_by_one(tiny_artifact: Path) -> None:
    # fp32: exact up to summation order. (INT8's dynamic activation scales are per tensor, so an
    # INT8 row moves slightly with its batch-mates; that is the quantization, not the bucketing.)
    fp32 = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", max_batch=4)
    together = fp32.logits(TEXTS)
    alone = np.concatenate([fp32.logits([t]) for t in TEXTS])
    assert together.shape == (len(TEXTS), 14)
    assert np.abs(together - alone).max() < 1e-5, "padding a row to a longer batch must not change it"


def test_matches_pytorch_through_the_tokenizer(tiny_artifact: Path) -> None:
    import torch

    from bert14.export.model import build_default
    from bert14.tokenizer import load_tokenizer

    fused = Classifier.load(tiny_artifact, precision="fp32", provider="cpu")
    assert fused.precision == "fp32"
    tokenizer, _ = load_tokenizer(tiny_artifact)
    source = build_default(**TINY_SHAPE).model
    for text in TEXTS:
        ids = torch.tensor([tokenizer.encode(text).ids])
        with torch.no_grad():
            expected = source(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.numpy()
        assert np.abs(fused.logits([text]) - expected).max() < 1e-4


def test_sentence_pairs_fill_token_type_ids(clf: Classifier) -> None:
    """The same ids with and without segment B marked: only token_type_ids differ, so a runtime
    that ignored them would give the same logits."""
    from bert14.encode import buckets

    (encoded,) = clf.encode(["北京"], ["上海"])
    assert encoded.type_ids == [0, 0, 0, 0, 1, 1, 1], "[CLS] 北 京 [SEP] | 上 海 [SEP]"
    (batch,) = buckets([encoded], max_batch=1, max_tokens=64)
    unmarked = type(batch)(batch.indices, batch.input_ids, batch.attention_mask, np.zeros_like(batch.token_type_ids))
    pair = clf.logits(["北京"], ["上海"])
    assert np.allclose(pair, clf._forward(batch), atol=1e-6)
    assert not np.allclose(pair, clf._forward(unmarked), atol=1e-4), "token_type_ids must reach the model"


def test_long_text_is_truncated_and_reported(clf: Classifier) -> None:
    long, short = clf.predict(["新闻" * 50_000, "新闻"])
    assert long.truncated and long.tokens == 512
    assert not short.truncated


def test_auto_picks_int8_on_cpu_and_int8_on_cuda_is_refused(tiny_artifact: Path, monkeypatch) -> None:
    auto = Classifier.load(tiny_artifact, provider="cpu", warmup=False)
    assert auto.precision == "int8" and auto.provider == "cpu"
    from bert14.runtime import engines
    from bert14.runtime.engines import onnxruntime

    monkeypatch.setattr(onnxruntime, "cuda_in_onnxruntime", lambda: True)  # as if onnxruntime-gpu saw a GPU
    available = {"model.int8.onnx", "model.fp16.onnx", "model.opt.onnx"}
    with pytest.raises(InputError, match="INT8 on the CUDA provider is refused.*fp16"):
        engines.resolve(tiny_artifact, "int8", "cuda", available)
    assert engines.resolve(tiny_artifact, "auto", "auto", available)[:2] == ("fp16", "cuda")
    with_seqlen = available | {"model.fp16.seqlen.onnx"}
    assert engines.resolve(tiny_artifact, "fp16", "cuda", with_seqlen)[2].name == "model.fp16.seqlen.onnx"
    monkeypatch.setattr(onnxruntime, "cuda_in_onnxruntime", lambda: False)
    assert engines.resolve(tiny_artifact, "fp16", "cpu", with_seqlen)[2].name == "model.fp16.onnx"


@pytest.mark.parametrize(
    "bad",
    [[None], ["ok", 3], [b"\xff\xfe"], 42],
    ids=["none", "number", "bytes", "not-a-list"],
)
def test_bad_items_get_a_clear_error(clf: Classifier, bad) -> None:
    with pytest.raises(InputError, match="expected"):
        clf.predict(bad)


@pytest.mark.parametrize(
    ("spinning", "entry", "value"),
    [(True, "session.force_spinning_stop", "1"), (False, "session.intra_op.allow_spinning", "0")],
    ids=["spin-only-while-running", "never-spin"],
)
def test_spinning_option_reaches_the_session(tiny_artifact: Path, spinning: bool, entry: str, value: str) -> None:
    from bert14.runtime.engines import SessionSettings, onnxruntime

    settings = SessionSettings(threads=2, spinning=spinning)
    session, _ = onnxruntime.open_session(tiny_artifact / "model.opt.onnx", "cpu", settings)
    assert session.get_session_options().get_session_config_entry(entry) == value


def test_unknown_load_option_is_named(tiny_artifact: Path) -> None:
    with pytest.raises(InputError, match="unknown option.*'thread'"):
        Classifier.load(tiny_artifact, thread=2)


def test_empty_list_gives_empty_result(clf: Classifier) -> None:
    assert clf.predict([]) == [] and clf.logits([]).shape == (0, 14)


def test_ten_thousand_texts_are_streamed(clf: Classifier) -> None:
    texts = [f"第{i}条新闻" for i in range(10_000)]
    predictions = clf.predict(texts)
    assert len(predictions) == 10_000
    assert predictions[1234].tokens == len(clf._tokenizer.encode(texts[1234]).ids)  # type: ignore[attr-defined]


def test_missing_corrupt_and_mismatched_artifacts(tmp_path: Path, tiny_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match="expected an artifact directory"):
        Classifier.load(tmp_path / "nothing")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    (copy / "model.int8.onnx").unlink()
    with pytest.raises(ArtifactError, match="model.int8.onnx: listed in the manifest but missing"):
        Classifier.load(copy, precision="int8", provider="cpu")
    shutil.copy(tiny_artifact / "model.int8.onnx", copy / "model.int8.onnx")
    with (copy / "model.int8.onnx").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        Classifier.load(copy, precision="int8", provider="cpu")
    with pytest.raises(ArtifactError, match="ONNX Runtime could not load it"):
        Classifier.load(copy, precision="int8", provider="cpu", verify=False)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"].pop("vocab.txt")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="vocab.txt: the manifest records no such file"):
        Classifier.load(copy, precision="fp32", provider="cpu")


def test_bucketed_binding_logic_matches_plain_runs(tiny_artifact: Path) -> None:
    """The CUDA runner's IO binding and fixed-bucket padding, exercised on the CPU provider."""
    from bert14.runtime.cuda import CudaRunner

    fp32 = Classifier.load(tiny_artifact, precision="fp32", provider="cpu")
    expected = fp32.logits(TEXTS)
    for cuda_graph in (False, True):
        fp32._cuda = CudaRunner(fp32._session, len(fp32.labels), cuda_graph, device="cpu")  # type: ignore[arg-type]
        assert np.abs(fp32.logits(TEXTS) - expected).max() < 1e-5
        assert np.abs(fp32.logits(TEXTS[:3]) - expected[:3]).max() < 1e-5
    assert set(fp32._cuda._graphs) <= {(b, s) for b in (1, 2, 4, 8) for s in (16, 32)}  # type: ignore[attr-defined]


def test_cuda_graph_buffers_are_not_shared_between_threads(tiny_artifact: Path) -> None:
    """Every call in one bucket fills the same persistent buffers: threads must not interleave."""
    import threading

    from bert14.runtime.cuda import CudaRunner

    clf = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1)
    texts = [f"第{i}条新闻 北京 上海" for i in range(32)]  # one bucket: (1, 16)
    expected = clf.logits(texts)
    clf._cuda = CudaRunner(clf._session, len(clf.labels), True, device="cpu")  # type: ignore[arg-type]
    wrong: list[int] = []

    def work(worker: int) -> None:
        for step in range(40):
            i = (worker * 5 + step) % len(texts)
            if np.abs(clf.logits([texts[i]]) - expected[i : i + 1]).max() > 1e-5:
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == [], f"{len(wrong)} of 320 calls got another text's logits"


def test_load_takes_typed_options_and_keyword_overrides(tiny_artifact: Path) -> None:
    from bert14.runtime import LoadOptions

    options = LoadOptions(precision="fp32", provider="cpu", threads=1, warmup=False)
    assert Classifier.load(tiny_artifact, options).precision == "fp32"
    assert Classifier.load(tiny_artifact, options, precision="int8").precision == "int8"
