"""The runtime's tokenizer against transformers' BertTokenizer on the real bert-base-chinese vocab."""

from __future__ import annotations

import json
import random

import pytest
from conftest import REAL_VOCAB, THUCNEWS, need

from bert14.tokenizer import TokenizerSettings, build_tokenizer, read_vocab

MAX_LENGTH = 512


@pytest.fixture(scope="module")
def pair():
    from transformers import BertTokenizer

    vocab_path = need(REAL_VOCAB)
    reference = BertTokenizer(str(vocab_path), do_lower_case=True, tokenize_chinese_chars=True)
    # transformers 5 ignores `vocab_file=` and builds a 5-token vocabulary; guard against that.
    assert len(reference.get_vocab()) == 21128
    ours = build_tokenizer(read_vocab(vocab_path), TokenizerSettings())
    ours.enable_truncation(max_length=MAX_LENGTH)
    return reference, ours


def _reference_ids(reference, text: str) -> list[int]:
    return reference(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]


def _texts_from_shared() -> list[str]:
    texts = []
    for line in need(THUCNEWS / "test.tsv").read_text(encoding="utf-8").split("\n")[1:]:
        if line:
            texts.append(line.split("\t", 1)[1])
    for line in need(THUCNEWS / "articles.jsonl").read_text(encoding="utf-8").split("\n"):
        if line:
            texts.append(json.loads(line)["text"])
    return texts


def test_identical_ids_on_all_thucnews_titles_and_articles(pair) -> None:
    reference, ours = pair
    texts = _texts_from_shared()
    assert len(texts) == 1070
    encodings = ours.encode_batch(texts)
    mismatches = [
        i for i, (t, e) in enumerate(zip(texts, encodings, strict=True)) if e.ids != _reference_ids(reference, t)
    ]
    assert mismatches == []


def _generated(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    pools = [
        lambda: chr(rng.randint(0x20, 0x7E)),  # ASCII
        lambda: chr(rng.randint(0x4E00, 0x9FFF)),  # CJK
        lambda: chr(rng.randint(0xFF01, 0xFF5E)),  # full-width forms
        lambda: chr(rng.choice([0x1F600, 0x1F680, 0x1F4A9, 0x2764, 0x1F1E8])),  # emoji
        lambda: chr(rng.randint(0x00, 0x1F)),  # control characters
        lambda: chr(rng.choice([0x00E9, 0x00C5, 0x0301, 0x200B, 0x3000, 0x00A0, 0xFEFF, 0x2028])),  # accents, spaces
        lambda: chr(rng.randint(0x20, 0x2FFF)),  # any BMP letter-ish range
        lambda: " ",
    ]
    return ["".join(rng.choice(pools)() for _ in range(rng.randint(0, 80))) for _ in range(count)]


def test_identical_ids_on_generated_unicode(pair) -> None:
    reference, ours = pair
    texts = _generated(seed=2026, count=2000)
    encodings = ours.encode_batch(texts)
    mismatches = [t for t, e in zip(texts, encodings, strict=True) if e.ids != _reference_ids(reference, t)]
    assert mismatches == []


def test_long_words_and_truncation_match(pair) -> None:
    reference, ours = pair
    texts = ["a" * 150, "超长" * 600, "word " * 700, "ＡＢＣ１２３" * 100]
    for text in texts:
        encoding = ours.encode(text)
        assert encoding.ids == _reference_ids(reference, text)
    assert ours.encode("超长" * 600).overflowing, "a cut text must be detectable"


SPECIALS = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[sep]", "[Mask]", "[ SEP ]", "[SEP", "##", "[unused1]"]


def _property_texts():
    from hypothesis import strategies as st

    pieces = st.one_of(
        st.text(st.characters(codec=None, exclude_categories=()), max_size=12),  # any code point, surrogates too
        st.text(st.characters(min_codepoint=0x00, max_codepoint=0x2F), max_size=6),  # controls, spaces, punctuation
        st.text(st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E), max_size=6),  # full-width forms
        st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=8),  # CJK
        st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=4),  # emoji
        st.sampled_from(SPECIALS),
    )
    return st.lists(pieces, max_size=8).map("".join)


def test_property_ids_identical_to_transformers_or_refused_as_not_unicode(pair) -> None:
    """Arbitrary Unicode with special-token strings mixed in: the same ids as transformers, id for
    id; a string that is not valid Unicode (a lone surrogate) is refused with an InputError naming
    it, where transformers' tokenizer raises a TypeError."""
    from hypothesis import HealthCheck, given, settings

    from bert14.encode import check_text
    from bert14.errors import InputError

    reference, ours = pair

    @settings(
        max_examples=3000, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(_property_texts())
    def same_ids(text: str) -> None:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            with pytest.raises(InputError, match="not a character"):
                check_text("texts[0]", text)
            return
        assert check_text("texts[0]", text) == text
        assert ours.encode(text).ids == _reference_ids(reference, text)

    same_ids()


def _long_texts():
    from hypothesis import strategies as st

    pieces = st.one_of(
        _property_texts(),
        st.sampled_from(["word ", "湖人", "。", "!", "\u0301", "e\u0301", "\u200b", "\u3000", "a" * 120, "[SEP]",
                         "##", "ＡＢ", "\t", "中\u0301", "İ", "\x00", "\ufffd"]),  # fmt: skip
    )
    return st.lists(pieces, min_size=1, max_size=60).map(lambda parts: "".join(parts)).filter(
        lambda text: not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    )


@pytest.mark.parametrize("max_length", [8, 20])
def test_property_a_long_text_cut_before_tokenizing_gives_the_same_ids(pair, monkeypatch, max_length: int) -> None:
    """The bounded tokenization (bert14.encode.bounded_prefix) against the whole text tokenized and then
    truncated, id for id and cut flag for cut flag, singles and pairs. The prefix sizes are shrunk so
    that texts of tens of characters go through every branch that a 10 MB text does."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from bert14 import encode as encoding

    _, ours = pair
    monkeypatch.setattr(encoding, "PREFIX_CHARS", 4)
    monkeypatch.setattr(encoding, "WHOLE_CHARS", 8)
    monkeypatch.setattr(encoding, "COUNT_CHARS", 5)

    @settings(max_examples=1200, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(_long_texts(), st.none() | _long_texts())
    def same(text: str, second: str | None) -> None:
        got = encoding.encode(ours, [text], None if second is None else [second], max_length)[0]
        ours.enable_truncation(max_length=max_length, strategy="longest_first")
        whole = ours.encode(text) if second is None else ours.encode(text, second)
        assert (got.ids, got.type_ids, got.truncated) == (whole.ids, whole.type_ids, bool(whole.overflowing))

    same()


def test_a_long_text_costs_what_its_kept_tokens_cost(pair) -> None:
    """The real sizes: a 4 MB text is cut to a prefix of a few thousand characters before tokenizing."""
    from bert14.encode import bounded_prefix, encode

    _, ours = pair
    for text in ("湖人主场险胜勇士，" * 500_000, "The Lakers won at home. " * 200_000):
        assert len(bounded_prefix(ours, text, MAX_LENGTH)) < 10_000
        ours.enable_truncation(max_length=MAX_LENGTH)
        got = encode(ours, [text], None, MAX_LENGTH)[0]
        whole = ours.encode(text)
        assert got.ids == whole.ids and got.truncated
