"""Texts -> padded id arrays, in length buckets, with truncation reported per text."""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer, normalizers

from bert14.artifact import INPUT_NAMES
from bert14.errors import InputError

Text = str
Pair = tuple[str, str]


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    type_ids: list[int]
    truncated: bool  # the text (or pair) was longer than the model's positions and was cut


class ModelInputs:
    """The int64 (B, S) arrays the encoder makes, by input name; a model takes those its family names."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def feeds(self, names: tuple[str, ...] = INPUT_NAMES) -> dict[str, np.ndarray]:
        """The arrays the model's inputs `names` take (Manifest.model.family.input_names)."""
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class Batch(ModelInputs):
    indices: list[int]  # positions of these rows in the caller's list
    input_ids: np.ndarray  # (B, S) int64, S = the longest row of this batch
    attention_mask: np.ndarray  # (B, S) int64
    token_type_ids: np.ndarray  # (B, S) int64


def check_text(what: str, text: object) -> str:
    """`text` if it is a str the tokenizer can take, else an InputError naming `what`.

    A Python str can hold lone surrogates (JSON's "\\ud800", or bytes that are not UTF-8 decoded
    with surrogateescape, as sys.argv does); the tokenizer cannot, and would raise a TypeError."""
    if not isinstance(text, str):
        hint = " (decode bytes to str first)" if isinstance(text, bytes | bytearray) else ""
        raise InputError(f"{what}: expected a string, got {type(text).__name__}{hint}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"{what}: expected Unicode text, found U+{ord(text[exc.start]):04X} at character {exc.start}, "
                "which is not a character (a lone surrogate, or bytes that are not UTF-8)"
            ) from None
    return text


def check_texts(texts: object, pairs: object | None = None) -> tuple[list[str], list[str] | None]:
    """The caller's texts as a list of str, or an InputError that names the first bad item."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence):
        raise InputError(f"texts: expected a list of strings, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        check_text(f"texts[{index}]", text)
    checked_pairs = None
    if pairs is not None:
        if isinstance(pairs, str):
            pairs = [pairs]
        if not isinstance(pairs, Sequence) or len(pairs) != len(texts):
            raise InputError(f"text_pairs: expected a list of {len(texts)} strings, one per text")
        for index, text in enumerate(pairs):
            check_text(f"text_pairs[{index}]", text)
        checked_pairs = list(pairs)
    return list(texts), checked_pairs


def encode(tokenizer: Tokenizer, texts: list[str], pairs: list[str] | None, max_length: int) -> list[Encoded]:
    """Token ids of each text (or pair), cut to max_length with the cut reported. A long text is cut
    to a prefix that still holds more tokens than fit (`bounded_prefix`) before it is tokenized: the
    same ids, in time and memory that do not grow with what truncation would throw away."""
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    if pairs is None:
        texts = [bounded_prefix(tokenizer, text, max_length) for text in texts]
    else:
        cut = [bounded_pair(tokenizer, a, b, max_length) for a, b in zip(texts, pairs, strict=True)]
        texts, pairs = [a for a, _ in cut], [b for _, b in cut]
    inputs: list[str] | list[tuple[str, str]] = texts if pairs is None else list(zip(texts, pairs, strict=True))
    encodings: list[Encoding] = tokenizer.encode_batch(inputs)
    return [Encoded(e.ids, e.type_ids, bool(e.overflowing)) for e in encodings]


# ----- cutting a long text before it is tokenized ---------------------------------------------------------
#
# Tokenizing a 10 MB line whole took 11 s and 1.45 GB to keep 510 of its tokens. BERT's tokenizer is
# local: its normalizer works per character, its pre-tokenizer splits at whitespace, punctuation and
# (with handle_chinese_chars) every CJK ideograph, and WordPiece works inside one word. So at a "safe"
# boundary, after such a character, tokens(text) = tokens(text[:cut]) + tokens(text[cut:]), provided the
# cut splits no added token ([SEP] and the like are matched in the raw text) and no combining mark
# follows (NFD could reorder it). A prefix cut there whose own tokens overflow max_length therefore keeps
# exactly the tokens truncation keeps, also for a pair under longest_first (which needs at most
# max_length - 2 tokens of either segment, and the prefix holds more). The fuzz test in
# tests/runtime/test_tokenizer_parity.py holds it to whole-text tokenization, id for id.

PREFIX_CHARS = 4096  # first prefix tried; doubled while it holds too few tokens
WHOLE_CHARS = 2 * PREFIX_CHARS  # texts this short are tokenized whole: a probe would cost more
_SAFE_ASCII = frozenset(" \t\n\r!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF))


def _safe_after(ch: str, cjk: bool) -> bool:
    """True when the tokenizer ends a word after `ch` whatever follows (it has no decomposition, so
    NFD cannot move a following mark before it)."""
    if ch in _SAFE_ASCII:
        return True
    code = ord(ch)
    if cjk and any(low <= code <= high for low, high in _CJK):
        return True
    return unicodedata.category(ch).startswith("P") and not unicodedata.decomposition(ch)


@functools.cache
def _boundary_chars(cjk: bool) -> re.Pattern[str]:
    """A character after which the tokenizer always ends a word (the BMP's, built once, on first need),
    not followed by a mark of the main combining blocks (the exact check is _safe_after's caller's)."""
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF and _safe_after(chr(c), cjk)]
    marks = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
    return re.compile("[" + "".join(re.escape(ch) for ch in chars) + "](?![" + marks + "])")


# RoBERTa's byte-level BPE and XLM-R's whitespace-split Unigram end a word before a single space between
# two non-spaces: the space starts the next piece (" Y" is one pre-token of GPT-2's regex; WhitespaceSplit
# drops it and Metaspace gives the next word its own "▁"), and neither normalizer joins characters across
# a space. So text[:cut] and text[cut:] tokenize to the whole text's tokens there too (the same fuzz,
# tests/runtime/test_family_tokenizers.py, holds them to it).
_SPACE_BOUNDARY = re.compile(r"(?<=\S)(?= \S)")


def safe_cut(text: str, start: int, pattern: re.Pattern[str], added: list[str]) -> int | None:
    """The first safe boundary at or after `start` (see above), or None."""
    at = max(start, 1) - 1
    while (found := pattern.search(text, at)) is not None:
        cut = found.end()
        at = found.start() + 1
        if cut < start:  # a zero-width boundary (the space rule) found just before `start`
            continue
        if cut >= len(text):
            return None
        if unicodedata.category(text[cut]).startswith("M"):
            continue
        if any(token in text[max(cut - len(token) + 1, 0) : cut + len(token) - 1] for token in added):
            continue  # the cut would split an added token
        return cut
    return None


_cut_rules: dict[int, tuple[Tokenizer, tuple[re.Pattern[str], list[str]] | None]] = {}


def cuts(tokenizer: Tokenizer) -> tuple[re.Pattern[str], list[str]] | None:
    """(where the tokenizer always ends a word, added tokens of more than one character), or None for a
    tokenizer whose locality this module does not know (it is then always given the whole text)."""
    entry = _cut_rules.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        entry = _cut_rules[id(tokenizer)] = (tokenizer, _rules(tokenizer))
    return entry[1]


def _rules(tokenizer: Tokenizer) -> tuple[re.Pattern[str], list[str]] | None:
    added = [t.content for t in tokenizer.get_added_tokens_decoder().values() if len(t.content) > 1]
    if isinstance(tokenizer.normalizer, normalizers.BertNormalizer):
        return _boundary_chars(bool(tokenizer.normalizer.handle_chinese_chars)), added
    pre = json.loads(tokenizer.to_str()).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and pre.get("use_regex", True) and tokenizer.normalizer is None:
        return _SPACE_BOUNDARY, added
    if kinds == ["WhitespaceSplit", "Metaspace"] and steps[1].get("prepend_scheme") == "always":
        return _SPACE_BOUNDARY, added
    return None


def prefixes(tokenizer: Tokenizer, text: str, start: int) -> Iterator[str]:
    """Ever longer prefixes of `text` cut at safe boundaries, from about `start` characters, then `text`."""
    rules = cuts(tokenizer)
    size = start
    while rules is not None and size < len(text):
        cut = safe_cut(text, size, *rules)
        if cut is None:
            break  # one word to the end (a single [UNK], or a few tokens)
        yield text[:cut]
        size = 2 * cut
    yield text


def bounded_prefix(tokenizer: Tokenizer, text: str, max_length: int) -> str:
    """`text`, or a prefix of it that tokenizes (truncated to max_length) to the very same ids."""
    if len(text) <= WHOLE_CHARS:
        return text
    for prefix in prefixes(tokenizer, text, PREFIX_CHARS):
        if prefix is text or tokenizer.encode(prefix).overflowing:  # more tokens than fit
            return prefix
    return text


def bounded_pair(tokenizer: Tokenizer, first: str, second: str, max_length: int) -> tuple[str, str]:
    """(first, second), or prefixes of them that tokenize as a pair (longest_first, max_length) to the
    very same ids. longest_first keeps at most max_length - 3 tokens of either segment, which a cut
    prefix exceeds, but which segment it cuts first depends on which is longer: so a cut segment's
    prefix is extended until it is longer than the other whenever the whole segment is, and where
    both are cut, their whole lengths are counted (a chunk at a time: bounded memory) to know which."""
    a, b = bounded_prefix(tokenizer, first, max_length), bounded_prefix(tokenizer, second, max_length)
    if a is first and b is second:
        return a, b
    if a is not first and b is not second:
        order = _sign(token_count(tokenizer, first) - token_count(tokenizer, second))
        if order == 0:
            return first, second  # equal token counts, both huge: only the whole texts guarantee the tie
    else:  # one is cut: it is the longer if its prefix outgrows the other (else it ends whole, exact too)
        order = 1 if a is not first else -1
    if order > 0:  # the first is longer: its prefix must stay longer than the second's
        a = _longer_than(tokenizer, first, a, token_count(tokenizer, b))
    else:
        b = _longer_than(tokenizer, second, b, token_count(tokenizer, a))
    return a, b


def _longer_than(tokenizer: Tokenizer, text: str, prefix: str, count: int) -> str:
    """The shortest of `prefix` and the safe prefixes of `text` after it that holds more than `count` tokens."""
    for candidate in prefixes(tokenizer, text, len(prefix)):
        if len(candidate) >= len(prefix) and token_count(tokenizer, candidate) > count:
            return candidate
    return text


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


COUNT_CHARS = 1 << 16  # characters tokenized at a time when counting a long text's tokens
_counters: dict[int, tuple[Tokenizer, Tokenizer]] = {}


def untruncated(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of `tokenizer` that never truncates (encode() sets truncation on the original), made once."""
    entry = _counters.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        counter = Tokenizer.from_str(tokenizer.to_str())
        counter.no_truncation()
        entry = _counters[id(tokenizer)] = (tokenizer, counter)
    return entry[1]


def token_count(tokenizer: Tokenizer, text: str) -> int:
    """How many tokens `text` has (no specials, no truncation), tokenized a chunk at a time at safe
    boundaries: the memory of one chunk, whatever the text's length."""
    counter, rules = untruncated(tokenizer), cuts(tokenizer)
    total, at = 0, 0
    while at < len(text):
        cut = safe_cut(text, at + COUNT_CHARS, *rules) if rules is not None and at + COUNT_CHARS < len(text) else None
        end = len(text) if cut is None else cut
        total += len(counter.encode(text[at:end], add_special_tokens=False).ids)
        at = end
    return total


def buckets(encoded: list[Encoded], max_batch: int, max_tokens: int, pad_id: int = 0) -> list[Batch]:
    """Sort by length, cut into batches of at most max_batch rows and max_tokens padded tokens,
    pad each batch only to its own longest row. Batch.indices restores the caller's order."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
    batches: list[Batch] = []
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and stop - start < max_batch:
            longest = len(encoded[order[stop]].ids)  # sorted: the newest row is the longest
            if longest * (stop - start + 1) > max_tokens:
                break
            stop += 1
        batches.append(_pad([encoded[i] for i in order[start:stop]], order[start:stop], pad_id))
        start = stop
    return batches


def _pad(rows: list[Encoded], indices: list[int], pad_id: int) -> Batch:
    length = max(len(r.ids) for r in rows)
    ids = np.full((len(rows), length), pad_id, dtype=np.int64)  # (B, S)
    mask = np.zeros((len(rows), length), dtype=np.int64)  # (B, S)
    types = np.zeros((len(rows), length), dtype=np.int64)  # (B, S)
    for row, encoded in enumerate(rows):
        n = len(encoded.ids)
        ids[row, :n] = encoded.ids
        mask[row, :n] = 1
        types[row, :n] = encoded.type_ids
    return Batch(indices, ids, mask, types)
