"""Long texts (bert14/long_text.py): the runtime's token selection against transformers', its scores
against PyTorch fed that selection, batch invariance of windows, bounded cost, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_VOCAB, THUCNEWS, need

from bert14.errors import InputError
from bert14.long_text import LongText, documents
from bert14.runtime import Classifier

ARTICLE = "记者从市交通委获悉，" + "地铁新线将于年底开通运营，沿线居民出行将更加便利。" * 60  # about 1,450 tokens
SPECS = [
    LongText("head_tail"),
    LongText("head_tail", head_tokens=0),
    LongText("head_tail", head_tokens=510),
    LongText("windows"),
    LongText("windows", stride=100, max_windows=3),
    LongText("windows", stride=510, pool="max"),
    LongText("windows", max_windows=1),
]


@pytest.fixture(scope="module")
def pair():
    """(transformers' BertTokenizer, the runtime's tokenizer), both over the real bert-base-chinese vocab."""
    from transformers import BertTokenizer

    from bert14.tokenizer import TokenizerSettings, build_tokenizer, read_vocab

    vocab = need(REAL_VOCAB)
    reference = BertTokenizer(str(vocab), do_lower_case=True, tokenize_chinese_chars=True, model_max_length=1 << 30)
    assert len(reference.get_vocab()) == 21128  # transformers 5 ignores a vocab_file it cannot read
    return reference, build_tokenizer(read_vocab(vocab), TokenizerSettings())


def _articles() -> list[str]:
    lines = need(THUCNEWS / "articles.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.strategy}-{s.head_tokens}-{s.stride}-{s.max_windows}")
def test_the_selection_is_transformers_tokens_chosen_as_the_strategy_says(pair, spec: LongText) -> None:
    """All 70 THUCNews articles (half over 512 tokens, the longest 2,422): the rows' ids equal those the
    reference builds from transformers' tokenization of the whole text, and so does the truncated flag."""
    from bert14.check.long_text import reference_rows

    reference, ours = pair
    texts = _articles()
    assert len(texts) == 70
    got = documents(ours, texts, spec, 512)
    for text, doc in zip(texts, got, strict=True):
        rows, truncated = reference_rows(reference, text, spec, 512)
        assert [row.ids for row in doc.rows] == rows
        assert doc.truncated == truncated
    long = sum(len(doc.rows) > 1 for doc in got)
    assert spec.strategy != "windows" or spec.max_windows == 1 or long >= 30, "windows must split the long articles"


def test_property_the_bounded_selection_equals_the_whole_texts(pair, monkeypatch) -> None:
    """The head from a prefix and the tail from a suffix, cut at word boundaries, against the whole text
    tokenized by transformers and selected by the reference, for any text, model length and setting.
    The sizes are shrunk so that texts of tens of characters go through every branch a 10 MB text does."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from bert14 import encode as encoding
    from bert14.check.long_text import reference_rows

    reference, ours = pair
    monkeypatch.setattr(encoding, "PREFIX_CHARS", 4)
    monkeypatch.setattr(encoding, "WHOLE_CHARS", 8)
    pieces = st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10),
        st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=8),
        st.sampled_from(["word ", "湖人", "。", "!", "\u0301", "e\u0301", "\u3000", "a" * 120, "[SEP]", "##", "\t"]),
    )
    texts = st.lists(pieces, min_size=1, max_size=40).map("".join)

    @settings(max_examples=600, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(texts, st.integers(3, 24), st.sampled_from(["head_tail", "windows"]), st.data())
    def same(text: str, max_length: int, strategy: str, data) -> None:  # noqa: ANN001
        body = max_length - 2
        spec = LongText(
            strategy,
            head_tokens=data.draw(st.integers(0, body)),
            stride=data.draw(st.integers(1, body)),
            max_windows=data.draw(st.integers(1, 6)),
        )
        doc = documents(ours, [text], spec, max_length)[0]
        rows, truncated = reference_rows(reference, text, spec, max_length)
        assert ([row.ids for row in doc.rows], doc.truncated) == (rows, truncated)
        if strategy == "windows":  # each window's characters lie in the text, in order
            starts = [start for start, _ in doc.spans]
            assert starts == sorted(starts) and all(0 <= a <= b <= len(text) for a, b in doc.spans)

    same()


def test_a_huge_text_is_never_tokenized_whole(pair, monkeypatch) -> None:
    """A 100,000-token text in windows, or head+tail of a 4 MB one: the tokenizer only ever sees the
    prefix and suffix the kept tokens come from."""
    from bert14 import encode as encoding

    _, ours = pair
    seen: list[int] = []
    counter = encoding.untruncated(ours)
    original = counter.encode

    class Spy:
        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(counter, name)

        def encode(self, text, *args, **kwargs):  # noqa: ANN001, ANN201
            seen.append(len(text))
            return original(text, *args, **kwargs)

    monkeypatch.setattr("bert14.long_text.untruncated", lambda tokenizer: Spy())
    text = "湖人主场险胜勇士，" * 11_200  # 100,800 tokens
    doc = documents(ours, [text], LongText("windows", max_windows=8), 512)[0]
    assert len(doc.rows) == 8 and doc.truncated and max(seen) < 20_000
    seen.clear()
    huge = "The Lakers won at home. " * 200_000
    doc = documents(ours, [huge], LongText("head_tail"), 512)[0]
    assert doc.truncated and len(doc.rows[0].ids) == 512 and max(seen) < 20_000


@pytest.fixture(scope="module")
def clf(tiny_artifact: Path) -> Classifier:
    return Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1)


def test_truncate_stays_the_default_and_a_short_text_is_one_window(clf: Classifier) -> None:
    title = "湖人主场险胜勇士 詹姆斯砍下三双"
    plain = clf.predict([title, ARTICLE])
    assert clf.options.long_text == LongText().fitted(510), "truncate, with BERT's defaults for the others"
    assert [p.windows for p in plain] == [1, 1] and plain[1].truncated
    for spec in (LongText("head_tail"), LongText("windows")):
        short = clf.predict([title], long_text=spec)[0]
        assert short.probs == plain[0].probs and not short.truncated and short.windows == 1
    windows = clf.predict([ARTICLE], long_text=LongText("windows"))[0]
    assert windows.windows == 5 and not windows.truncated and windows.tokens == 5 * 512
    assert [w.start for w in windows.window_labels][0] == 0 and windows.window_labels[-1].end == len(ARTICLE)
    capped = clf.predict([ARTICLE], long_text=LongText("windows", max_windows=2))[0]
    assert capped.windows == 2 and capped.truncated
    roomy = clf.predict([ARTICLE, title], long_text=LongText("windows", max_windows=4096))  # a cap over CHUNK rows
    assert [p.windows for p in roomy] == [5, 1] and roomy[0].probs == windows.probs


def test_pooled_scores_are_the_windows_mean_or_max(clf: Classifier) -> None:
    for pool in ("mean", "max"):
        spec = LongText("windows", pool=pool)
        doc = clf.documents([ARTICLE], long_text=spec)[0]
        rows = clf.predict_encoded(list(doc.rows))
        probs = np.array([[p.probs[label] for label in clf.labels] for p in rows])  # (W, C)
        want = probs.mean(0) if pool == "mean" else probs.max(0)
        got = clf.predict([ARTICLE], long_text=spec)[0]
        assert [got.probs[label] for label in clf.labels] == want.tolist()
        assert got.label == clf.labels[int(want.argmax())]
        assert [w.label for w in got.window_labels] == [p.label for p in rows]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_text_in_windows_gets_the_same_bits_whatever_its_batch(tiny_artifact: Path, precision: str) -> None:
    """Windows are rows like any other: alone, among other texts, in other orders and batch limits."""
    others = ["央行宣布降准", "新款折叠屏手机发布" * 30, ARTICLE[:700], "沪指午后翻红"]
    spec = LongText("windows", stride=200)
    single = Classifier.load(tiny_artifact, precision=precision, provider="cpu", threads=1)
    alone = single.predict([ARTICLE], long_text=spec)
    for max_batch, max_tokens in ((32, 8192), (3, 1024), (1, 512)):
        clf = Classifier.load(tiny_artifact, precision=precision, provider="cpu", threads=1,
                              max_batch=max_batch, max_tokens=max_tokens, long_text=spec)  # fmt: skip
        together = clf.predict([*others, ARTICLE, *others[::-1]])
        assert together[len(others)].probs == alone[0].probs


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: LongText(max_windows=0), "long_text max_windows: expected a whole number from 1 to 4096, got 0"),
        (lambda: LongText("head_tail", head_tokens=-1), "long_text head_tokens: expected a whole number from 0"),
        (lambda: LongText("window"), "long_text: expected one of truncate, head_tail, windows, got 'window'"),
        (lambda: LongText(pool="median"), "long_text pool: expected one of mean, max, got 'median'"),
        (lambda: LongText(stride=0), "long_text stride: expected a whole number from 1"),
    ],
)
def test_bad_settings_are_one_line_input_errors(build, message: str) -> None:
    with pytest.raises(InputError) as caught:
        build()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_what_the_model_cannot_do_is_refused_at_load_or_per_call(clf: Classifier, tiny_artifact: Path) -> None:
    with pytest.raises(InputError, match="head_tokens: expected 0 to 510"):
        Classifier.load(tiny_artifact, provider="cpu", long_text=LongText("head_tail", head_tokens=511))
    with pytest.raises(InputError, match="stride: expected 1 to 510"):
        clf.predict(["a"], long_text=LongText("windows", stride=600))
    with pytest.raises(InputError, match="takes single texts; sentence pairs are cut longest-first"):
        clf.predict(["a"], ["b"], long_text=LongText("windows"))
    with pytest.raises(InputError, match="use predict"):
        clf.logits(["a"], long_text=LongText("windows"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--long-text", "windows", "--max-windows", "0"],
         "long_text max_windows: expected a whole number from 1 to 4096, got 0"),
        (["--long-text", "head_tail", "--head-tokens", "-1"], "head_tokens: expected a whole number from 0"),
        (["--long-text", "windowz"], "long_text: expected one of truncate, head_tail, windows, got 'windowz'"),
    ],
)
def test_the_cli_says_what_is_wrong_in_one_line(tiny_artifact: Path, capsys, flags: list[str], message: str) -> None:
    from bert14.commands.cli import main

    assert main(["predict", str(tiny_artifact), "湖人", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_the_cli_predicts_in_windows(tiny_artifact: Path, capsys) -> None:
    from bert14.commands.cli import main

    assert main(["predict", str(tiny_artifact), ARTICLE, "--long-text", "windows", "--pool", "max"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["windows"] == 5 and len(row["window_labels"]) == 5 and row["truncated"] is False


def test_check_long_text_passes_and_catches_a_wrong_selection(tiny_artifact: Path, monkeypatch) -> None:
    """`bert14 check --long-text` against PyTorch; a runtime whose windows are off by one token fails it."""
    from bert14 import long_text
    from bert14.check.long_text import check_long_text, long_text_failures

    texts = [ARTICLE, "湖人主场险胜勇士", ARTICLE[:900] + "。" + ARTICLE[-300:]]
    for spec in (LongText("head_tail"), LongText("windows", stride=300), LongText("windows", pool="max")):
        result = check_long_text(tiny_artifact, texts, spec)
        assert set(result["runs"]) >= {"fp32_fused", "int8"}
        assert long_text_failures(result) == [], result
    original = long_text._windows

    def shifted(*args):  # noqa: ANN002, ANN202
        doc = original(*args)
        rows = tuple(long_text.Encoded(r.ids[:-2] + r.ids[-1:], r.type_ids[:-1], False) for r in doc.rows)
        return long_text.Document(rows, doc.truncated, doc.spans, doc.pool)

    monkeypatch.setattr(long_text, "_windows", shifted)
    failed = long_text_failures(check_long_text(tiny_artifact, texts, LongText("windows")))
    assert failed and "token selection differs from transformers'" in failed[0]


def test_cli_check_long_text_reports_every_cpu_engine(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    from bert14.commands.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text(f"{ARTICLE}\n湖人主场险胜勇士\n", encoding="utf-8")
    assert main(["check", str(tiny_artifact), "--texts", str(texts), "--long-text", "windows", "--stride", "300",
                 "--json", "--quiet"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)["long_text"]
    assert report["strategy"]["stride"] == 300 and report["texts"] == 2
    assert set(report["runs"]) == {"fp32_fused", "int8", "int8_openvino"}
    assert all(run["passed"] and run["rows"] == 6 for run in report["runs"].values())
    assert main(["check", str(tiny_artifact), "--long-text", "tail"]) == 2
    assert "long_text: expected one of truncate, head_tail, windows, got 'tail'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def short_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny default-model artifact of 64 positions: rows of 62 tokens of text."""
    from conftest import TINY_SHAPE

    from bert14.commands.build import ExportOptions, export_artifact

    out = tmp_path_factory.mktemp("short") / "art"
    shape = dict(TINY_SHAPE, max_position_embeddings=64)
    export_artifact(ExportOptions(out_dir=out, shape_overrides=shape, openvino=False, fp16_seqlen=False))
    return out


def test_the_defaults_fit_a_model_of_fewer_positions(short_model: Path) -> None:
    # BERT's defaults (128 head tokens, a stride of 256) are more than such a row holds; they used to
    # be refused ("stride: expected 1 to 62, got 256") while /v1/model advertised them.
    clf = Classifier.load(short_model, precision="fp32", provider="cpu", threads=1, long_text="windows")
    assert (clf.options.long_text.head_tokens, clf.options.long_text.stride) == (15, 31)
    assert clf.describe()["long_text"] == {"strategy": "windows", "head_tokens": 15, "stride": 31, "pool": "mean",
                                           "max_windows": 64}  # fmt: skip
    (p,) = clf.predict([ARTICLE])
    assert p.windows == len(p.window_labels) > 40, "windows 31 tokens apart over about 1,450 tokens"
    assert clf.predict([ARTICLE], long_text="head_tail")[0].truncated
    with pytest.raises(InputError, match="long_text stride: expected 1 to 62 .* got 100"):
        clf.predict([ARTICLE], long_text={"strategy": "windows", "stride": 100})
    assert LongText("windows").fitted(510) == LongText("windows", head_tokens=128, stride=256), "BERT's own defaults"


def test_the_defaults_fit_on_every_surface(short_model: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from bert14.runtime.server import ServerOptions, create_app

    clf = Classifier.load(short_model, precision="fp32", provider="cpu", threads=1)
    with TestClient(create_app(clf, ServerOptions()), base_url="http://localhost") as client:
        assert client.get("/v1/model").json()["long_text"]["stride"] == 31
        for long_text in ("windows", "head_tail", {"strategy": "windows", "pool": "max"}):
            reply = client.post("/v1/classify", json={"texts": [ARTICLE], "long_text": long_text})
            assert reply.status_code == 200, reply.text
    cli = str(Path(sys.executable).parent / "bert14")
    for strategy in ("windows", "head_tail"):
        done = subprocess.run([cli, "predict", str(short_model), ARTICLE, "--long-text", strategy, "--threads", "1"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    texts = tmp_path / "in.txt"
    texts.write_text(ARTICLE + "\n", encoding="utf-8")
    # Checked against the model before Ray starts: one line, not a worker's traceback seconds later.
    argv = [cli, "batch", str(short_model), "--input", str(texts), "--output", str(tmp_path / "o"),
            "--long-text", "windows", "--stride", "100"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr[-2000:]
    assert "long_text stride: expected 1 to 62" in done.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("windows", LongText("windows")), ({"strategy": "head_tail", "head_tokens": 7}, LongText("head_tail", 7)),
     (LongText("windows", pool="max"), LongText("windows", pool="max"))],
)  # fmt: skip
def test_load_takes_a_strategys_name_or_a_mapping_as_the_cli_and_server_do(
    tiny_artifact: Path, value: object, expected: LongText
) -> None:
    from bert14.runtime import LoadOptions

    assert LoadOptions(long_text=value).long_text == expected  # type: ignore[arg-type]
    clf = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1, long_text=value)
    assert clf.options.long_text == expected.fitted(510)
    with pytest.raises(InputError, match="long_text: expected a LongText, a strategy's name or a mapping"):
        LoadOptions(long_text=3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="long_text: expected one of truncate, head_tail, windows, got 'window'"):
        Classifier.load(tiny_artifact, long_text="window")
