"""Each family's runtime tokenizer, id for id with transformers' AutoTokenizer on the checkpoint.

The reference is what a user of transformers 5 gets for the checkpoint directory they bring
(AutoTokenizer: DistilBertTokenizer, ElectraTokenizer, BertTokenizer for ERNIE, RobertaTokenizer's
byte-level BPE, XLMRobertaTokenizer's Unigram); the runtime reads the exported artifact. Hypothesis
draws texts from pools where the tokenizers differ most: CJK, ASCII words and punctuation, runs of
spaces and other whitespace, accents and combining marks, full-width forms, emoji, and every family's
special-token strings written inside the text. Single texts and pairs, truncated to the model's limit.
"""

from __future__ import annotations

import pytest
from conftest import FAMILY_POSITIONS, FAMILY_SHAPES
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bert14.family import FAMILIES

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", "<mask>", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[unused1]"]
PIECES = st.one_of(
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x4E00 + 900), min_size=1, max_size=6),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=8),
    st.sampled_from(["news", "market", "NBA", "iPhone", "2026", "3.5%", " ", "  ", "\t", "\n", "\u3000", "\u00a0"]),
    st.sampled_from(["word ", " word", "a b", "一 二"]),  # single spaces between words: where BPE and Unigram cut
    st.sampled_from(["é", "e\u0301", "Ａ", "ｂ", "１", "😀", "ß", "İ", "ﬁ", "\u200b", "’", "—", "…", "·"]),
    st.sampled_from(SPECIALS),
)
TEXTS = st.lists(PIECES, max_size=30).map("".join)
EXAMPLES = 150


@pytest.fixture(scope="module", params=list(FAMILY_SHAPES))
def tokenizers(request, family_artifacts):
    import transformers
    from transformers import AutoTokenizer

    from bert14.runtime import Classifier

    checkpoint, artifact = family_artifacts[request.param]
    reference = AutoTokenizer.from_pretrained(str(checkpoint))
    assert isinstance(reference, getattr(transformers, FAMILIES[request.param].tokenizer_class))
    return reference, Classifier.load(artifact, precision="fp32", provider="cpu", threads=1, warmup=False)


def _reference(reference, text: str, pair: str | None) -> list[int]:
    # The batch form: called on one string, transformers drops an empty pair ("" is falsy) and encodes
    # the text alone; in a batch, as the runtime always encodes, the empty second segment is kept.
    pairs = None if pair is None else [pair]
    return reference([text], pairs, truncation=True, max_length=FAMILY_POSITIONS)["input_ids"][0]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_single_texts(tokenizers, text: str) -> None:
    reference, clf = tokenizers
    (ours,) = clf.encode([text])
    assert ours.ids == _reference(reference, text, None)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, pair=TEXTS)
def test_pairs(tokenizers, text: str, pair: str) -> None:
    reference, clf = tokenizers
    (ours,) = clf.encode([text], [pair])
    assert ours.ids == _reference(reference, text, pair)


def test_bounded_prefixes_and_suffixes_give_the_whole_texts_tokens(tokenizers, monkeypatch) -> None:
    """RoBERTa's BPE and XLM-R's Unigram are cut before a single space between non-spaces (encode.py), as
    BERT's WordPiece is at its boundaries: truncation, head_tail and windows from a prefix or suffix
    against transformers' ids of the whole text, selected by the reference. Sizes shrunk so that texts of
    tens of characters take every branch a 10 MB text does."""
    from bert14 import encode as encoding
    from bert14.check.long_text import reference_rows
    from bert14.long_text import LongText, documents
    from bert14.tokenizer import load_tokenizer

    reference, clf = tokenizers
    monkeypatch.setattr(encoding, "PREFIX_CHARS", 4)
    monkeypatch.setattr(encoding, "WHOLE_CHARS", 8)
    monkeypatch.setattr(encoding, "COUNT_CHARS", 8)
    ours, _ = load_tokenizer(clf.directory, clf.manifest.model.family)
    texts = st.lists(PIECES, min_size=1, max_size=40).map("".join)

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(texts, st.integers(4, 24), st.sampled_from(["truncate", "head_tail", "windows"]), st.data())
    def same(text: str, max_length: int, strategy: str, data) -> None:  # noqa: ANN001
        body = max_length - 2
        spec = LongText(strategy, head_tokens=data.draw(st.integers(0, body)),
                        stride=data.draw(st.integers(1, body)), max_windows=data.draw(st.integers(1, 6)))  # fmt: skip
        if strategy == "truncate":
            (encoded,) = encoding.encode(ours, [text], None, max_length)
            got = ([encoded.ids], encoded.truncated)
        else:
            doc = documents(ours, [text], spec, max_length)[0]
            got = ([row.ids for row in doc.rows], doc.truncated)
        assert got == reference_rows(reference, text, spec, max_length)

    same()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
@example(text="news market 一 二 iPhone, 2026 [SEP] x <s> y")  # words between single spaces: every kind of cut
def test_every_safe_cut_splits_the_tokens_and_nothing_else(tokenizers, text: str) -> None:
    """The claim bounded prefixes rest on (encode.py): at every boundary safe_cut finds, the text's tokens
    are the prefix's followed by the suffix's."""
    from bert14.encode import cuts, safe_cut
    from bert14.tokenizer import load_tokenizer

    _, clf = tokenizers
    ours, _ = load_tokenizer(clf.directory, clf.manifest.model.family)
    rules = cuts(ours)
    assert rules is not None, "every supported family's tokenizer has known boundaries"
    whole = ours.encode(text, add_special_tokens=False).ids
    at = 1
    while (cut := safe_cut(text, at, *rules)) is not None:
        parts = (
            ours.encode(text[:cut], add_special_tokens=False).ids
            + ours.encode(text[cut:], add_special_tokens=False).ids
        )
        assert parts == whole, (text[:cut], text[cut:])
        at = cut + 1
