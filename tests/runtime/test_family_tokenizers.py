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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bert14.family import FAMILIES

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", "<mask>", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[unused1]"]
PIECES = st.one_of(
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x4E00 + 900), min_size=1, max_size=6),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=8),
    st.sampled_from(["news", "market", "NBA", "iPhone", "2026", "3.5%", " ", "  ", "\t", "\n", "\u3000", "\u00a0"]),
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
