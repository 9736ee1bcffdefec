"""Texts -> padded id arrays, in length buckets, with truncation reported per text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Encoding, Tokenizer

from bert14.errors import InputError

Text = str
Pair = tuple[str, str]


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    type_ids: list[int]
    truncated: bool  # the text (or pair) was longer than the model's positions and was cut


class ModelInputs:
    """The three int64 (B, S) arrays every artifact takes, by input name."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


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
    """Token ids of each text (or pair), cut to max_length with the cut reported."""
    tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    inputs: list[str] | list[tuple[str, str]] = texts if pairs is None else list(zip(texts, pairs, strict=True))
    encodings: list[Encoding] = tokenizer.encode_batch(inputs)
    return [Encoded(e.ids, e.type_ids, bool(e.overflowing)) for e in encodings]


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
