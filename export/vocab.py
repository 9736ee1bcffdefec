"""A deterministic WordPiece vocabulary shaped like bert-base-chinese's, for the default model.

Layout (21128 entries, the ids of the special tokens match bert-base-chinese):

    0            [PAD]
    1..99        [unused1] .. [unused99]
    100..103     [UNK] [CLS] [SEP] [MASK]
    104..105     <S> <T>
    then         ASCII punctuation, digits, lower-case letters (the tokenizer lower-cases),
                 full-width and CJK punctuation, "##"-continuations of digits and letters,
                 common multi-digit numbers, and CJK Unified Ideographs from U+4E00 up
                 until the vocabulary holds exactly VOCAB_SIZE entries.

The real vocabulary is not redistributable from code, and the default model's weights are
untrained anyway; this one is only required to be the right size, stable byte for byte, and to
cover the characters of Chinese news text so the tokenizer produces realistic ids.
"""

from __future__ import annotations

import string

VOCAB_SIZE = 21128
SPECIAL_TOKENS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}

_CJK_PUNCTUATION = "，。、；：？！“”‘’（）《》〈〉【】『』「」〔〕…—～·￥％＃＠＆＊＋－＝／＼｜０１２３４５６７８９"
_CJK_FIRST, _CJK_LAST = 0x4E00, 0x9FFF


def build_vocab() -> list[str]:
    """The default vocabulary, one token per id."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)]
    tokens += ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"]
    tokens += list(string.punctuation) + list(string.digits) + list(string.ascii_lowercase)
    tokens += list(_CJK_PUNCTUATION)
    tokens += ["##" + c for c in string.digits + string.ascii_lowercase]
    tokens += [f"{n:02d}" for n in range(100)] + [str(year) for year in range(1900, 2031)]
    tokens += ["##" + f"{n:02d}" for n in range(100)]
    seen = set(tokens)
    code = _CJK_FIRST
    while len(tokens) < VOCAB_SIZE:
        if code > _CJK_LAST:
            raise AssertionError("CJK block exhausted before the vocabulary was full")
        char = chr(code)
        if char not in seen:
            tokens.append(char)
        code += 1
    assert len(tokens) == len(set(tokens)) == VOCAB_SIZE
    for token, index in SPECIAL_TOKENS.items():
        assert tokens[index] == token
    return tokens
