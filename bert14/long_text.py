"""Texts longer than the model's positions: which of their tokens the model sees, and in how many rows.

    truncate   [CLS] t0 .. t509 [SEP]                          the first tokens (transformers' truncation)
    head_tail  [CLS] t0 .. t(H-1) t(n-T) .. t(n-1) [SEP]       the first H and last T, H + T = 510
    windows    [CLS] t0 .. t509 [SEP]                          windows of 510 tokens, `stride` apart,
               [CLS] t256 .. t765 [SEP]                        the last one ending at the text's end;
               [CLS] t(n-510) .. t(n-1) [SEP]                  each is a row, their scores pooled

(510 for a model of 512 positions whose tokenizer adds two special tokens.) `truncate` is bert14's
behaviour before this module and stays the default. Sun et al. 2019 ("How to Fine-Tune BERT for Text
Classification?", Table 2) found head+tail with H = 128 the best of six strategies on IMDb and Sogou
news; windows whose probabilities are averaged (or maxed) are the other common practice.

Windows are rows like any other, so batching, the server's token budget and batch invariance hold for
them unchanged; a text's answer pools its rows' scores (`pool`): `mean`, every label's average score
over the windows, or `max`, every label's highest (they then no longer sum to 1). At most
`max_windows` windows are kept, the first ones; a text with more is reported as truncated.

Sentence pairs: `truncate` cuts them longest-first, as transformers does; the other two strategies
take single texts and refuse pairs with an InputError, since which segment a window or a tail would
belong to has no answer that keeps both segments whole.

A long text is never tokenized whole: the head comes from a prefix, the tail from a suffix, both cut at
boundaries where the tokenizer always ends a word (bert14/encode.py explains why that gives the very
same tokens), so time and memory follow the tokens kept, not the text's length.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tokenizers import Tokenizer

from bert14 import encode
from bert14.encode import Encoded, cuts, prefixes, safe_cut, untruncated
from bert14.errors import InputError, shown
from bert14.options import flag

TRUNCATE, HEAD_TAIL, WINDOWS = "truncate", "head_tail", "windows"
STRATEGIES = (TRUNCATE, HEAD_TAIL, WINDOWS)
POOLS = ("mean", "max")
# The fitted defaults (LongText.fitted) for rows of BODY tokens of text (512 positions less [CLS] and [SEP]).
HEAD_TOKENS, STRIDE, BODY = 128, 256, 510
# A cap on windows per text beyond which a request is a mistake: 4,096 windows of 512 tokens are
# two million tokens, minutes of CPU for one text.
MAX_WINDOWS = 4096


@dataclass(frozen=True)
class LongText:
    """What the runtime does with a text longer than the model's positions (see the module's docstring).
    Each field is also a flag of `predict`, `serve` and `batch` (bert14/options.py)."""

    strategy: str = field(
        default=TRUNCATE,
        metadata=flag(
            "a text over the model's positions: truncate (keep its first tokens), head_tail (its first "
            "--head-tokens and its last tokens) or windows (every part, in overlapping windows whose scores "
            "are pooled)",
            name="long-text",
            metavar="STRATEGY",
        ),
    )
    # None: fitted to the model (fitted()): 128 and 256 for rows of 510 tokens, in proportion for fewer.
    head_tokens: int | None = field(
        default=None,
        metadata=flag(
            "head_tail: tokens kept from the text's start; the rest come from its end (default: 128, a quarter "
            "of the row for a model of fewer positions)",
            type=int,
        ),
    )
    stride: int | None = field(
        default=None,
        metadata=flag(
            "windows: tokens from one window's start to the next (default: 256, half a window for a model of "
            "fewer positions)",
            type=int,
        ),
    )
    pool: str = field(default="mean", metadata=flag("windows: a text's scores are the windows' mean or max"))
    max_windows: int = field(default=64, metadata=flag("windows: at most this many per text (the first ones)"))

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"long_text: expected one of {', '.join(STRATEGIES)}, got {shown(self.strategy)}")
        if self.pool not in POOLS:
            raise InputError(f"long_text pool: expected one of {', '.join(POOLS)}, got {shown(self.pool)}")
        for name, low, high in (("head_tokens", 0, 1 << 20), ("stride", 1, 1 << 20), ("max_windows", 1, MAX_WINDOWS)):
            value = getattr(self, name)
            if value is None and name != "max_windows":  # fitted to the model
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"long_text {name}: expected a whole number from {low} to {high}, got {shown(value)}")

    def fitted(self, body: int) -> LongText:
        """This spec with the settings left to the model filled in for rows of `body` tokens of text: the
        defaults (128 head tokens, a stride of 256) for BERT's 510, the same fractions of a shorter row, so
        a model of 64 positions gets 15 and 31 rather than defaults it cannot take."""
        head = self.head_tokens if self.head_tokens is not None else min(HEAD_TOKENS, HEAD_TOKENS * body // BODY)
        stride = self.stride if self.stride is not None else max(1, min(STRIDE, STRIDE * body // BODY))
        return self if (head, stride) == (self.head_tokens, self.stride) else replace(self, head_tokens=head,
                                                                                      stride=stride)  # fmt: skip

    def check(self, body: int, pairs: bool) -> None:
        """Refuse what this spec cannot do for a model whose rows hold `body` tokens of text, or for pairs."""
        if self.strategy == TRUNCATE:
            return
        if pairs:
            raise InputError(
                f"long_text {self.strategy}: takes single texts; sentence pairs are cut longest-first by "
                "'truncate', so send pairs with long_text 'truncate'"
            )
        spec = self.fitted(body)  # what was left to the model always fits; what was asked for may not
        if spec.strategy == HEAD_TAIL and spec.head_tokens > body:  # type: ignore[operator]
            raise InputError(f"long_text head_tokens: expected 0 to {body} (this model's rows hold {body} tokens "
                             f"of text), got {spec.head_tokens}")  # fmt: skip
        if spec.strategy == WINDOWS and spec.stride > body:  # type: ignore[operator]
            raise InputError(f"long_text stride: expected 1 to {body} (a window of this model holds {body} "
                             f"tokens; a longer stride would skip text), got {spec.stride}")  # fmt: skip

    @classmethod
    def parse(cls, value: object, default: LongText) -> LongText:
        """A request's long_text: a strategy's name, or an object of this class's fields; what it leaves
        out comes from `default` (the server's)."""
        if value is None:
            return default
        if isinstance(value, LongText):
            return value
        if isinstance(value, str):
            value = {"strategy": value}
        if not isinstance(value, Mapping):
            raise InputError(f"long_text: expected a strategy's name or an object of {list(cls.__dataclass_fields__)}")
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"long_text: unknown field(s) {shown(unknown)}; expected {list(cls.__dataclass_fields__)}")
        fields = {name: getattr(default, name) for name in cls.__dataclass_fields__}
        return cls(**(fields | dict(value)))


@dataclass(frozen=True)
class Document:
    """One text's rows: one, or its windows in order, with where each lies in the text (characters)."""

    rows: tuple[Encoded, ...]
    truncated: bool  # tokens of the text that no row holds
    spans: tuple[tuple[int, int], ...] = ()  # windows: each row's [start, end) in the text's characters
    pool: str = "mean"  # windows: how the rows' scores make the text's (LongText.pool)


@dataclass(frozen=True)
class _Template:
    """Where a tokenizer puts a single text's tokens between its special tokens ([CLS] $A [SEP])."""

    before: tuple[int, ...]
    after: tuple[int, ...]

    def wrap(self, ids: list[int]) -> Encoded:
        row = [*self.before, *ids, *self.after]
        return Encoded(row, [0] * len(row), False)


@functools.lru_cache(maxsize=8)
def _template(tokenizer: Tokenizer) -> _Template:
    bare = tokenizer.encode(["x"], is_pretokenized=True, add_special_tokens=False).ids
    full = tokenizer.encode(["x"], is_pretokenized=True, add_special_tokens=True)
    mask = full.special_tokens_mask
    at = next(i for i in range(len(full.ids)) if full.ids[i : i + len(bare)] == bare and not mask[i])
    return _Template(tuple(full.ids[:at]), tuple(full.ids[at + len(bare) :]))


def body_tokens(tokenizer: Tokenizer, max_length: int) -> int:
    """Tokens of text a row holds: the model's positions minus the special tokens around a single text."""
    template = _template(tokenizer)
    return max_length - len(template.before) - len(template.after)


class OverBudget(Exception):
    """The texts' rows would hold more tokens than the caller's budget (a server's per-request limit);
    raised before the rows that pass it are built, so a hostile setting (stride 1, thousands of
    windows) costs no memory."""

    def __init__(self, budget: int) -> None:
        super().__init__(f"the rows would hold more than {budget} tokens")
        self.budget = budget


def documents(
    tokenizer: Tokenizer, texts: list[str], spec: LongText, max_length: int, budget: int | None = None
) -> list[Document]:
    """Each text's rows under `spec` (head_tail or windows; truncate is encode()'s); OverBudget as soon
    as they would hold more than `budget` tokens, when one is given."""
    template, body = _template(tokenizer), body_tokens(tokenizer, max_length)
    spec.check(body, pairs=False)
    spec = spec.fitted(body)
    select = _head_tail if spec.strategy == HEAD_TAIL else _windows
    out, left = [], budget
    for text in texts:
        try:
            doc = select(tokenizer, text, spec, body, template, left)
        except OverBudget:
            raise OverBudget(budget) from None  # type: ignore[arg-type]  # the whole budget, not what was left
        if left is not None:
            left -= sum(len(row.ids) for row in doc.rows)
            if left < 0:
                raise OverBudget(budget)  # type: ignore[arg-type]
        out.append(doc)
    return out


def _head_tail(
    tokenizer: Tokenizer, text: str, spec: LongText, body: int, template: _Template, left: int | None = None
) -> Document:
    ids, _, whole = head_tokens(tokenizer, text, body)
    if whole and len(ids) <= body:
        return Document((template.wrap(ids),), False)
    tail = body - spec.head_tokens
    end = tail_tokens(tokenizer, text, tail)[0] if tail else []
    return Document((template.wrap(ids[: spec.head_tokens] + end),), True)


def _windows(
    tokenizer: Tokenizer, text: str, spec: LongText, body: int, template: _Template, left: int | None = None
) -> Document:
    need = (spec.max_windows - 1) * spec.stride + body  # tokens the first max_windows windows hold
    ids, offsets, whole = head_tokens(tokenizer, text, need)
    n = len(ids)
    starts = [*range(0, n - body, spec.stride), n - body] if n > body else [0]
    truncated = not whole or len(starts) > spec.max_windows
    if truncated:
        starts = [i * spec.stride for i in range(spec.max_windows)]
    specials = len(template.before) + len(template.after)
    if left is not None and sum(min(s + body, n) - s + specials for s in starts) > left:
        raise OverBudget(left)  # counted before a row is built
    rows, spans = [], []
    for start in starts:
        stop = min(start + body, n)
        rows.append(template.wrap(ids[start:stop]))
        spans.append((offsets[start][0], offsets[stop - 1][1]) if stop > start else (0, 0))
    return Document(tuple(rows), truncated, tuple(spans), spec.pool)


def head_tokens(tokenizer: Tokenizer, text: str, count: int) -> tuple[list[int], list[tuple[int, int]], bool]:
    """(ids, character offsets, whole): the text's tokens (no specials) from its start, at least `count`
    of them and more than `count` unless `whole` (they are all of the text's)."""
    counter = untruncated(tokenizer)
    if len(text) > encode.WHOLE_CHARS:  # read at call time: the tests shrink the sizes
        for prefix in prefixes(tokenizer, text, max(encode.PREFIX_CHARS, 2 * count)):
            encoding = counter.encode(prefix, add_special_tokens=False)
            if prefix is text or len(encoding.ids) > count:
                return encoding.ids, encoding.offsets, prefix is text
    encoding = counter.encode(text, add_special_tokens=False)
    return encoding.ids, encoding.offsets, True


def tail_tokens(tokenizer: Tokenizer, text: str, count: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The text's last `count` tokens (no specials; fewer when it has fewer) and their character offsets,
    tokenized from a suffix cut at a boundary where the tokenizer ends a word: the same tokens as the
    whole text's end."""
    counter = untruncated(tokenizer)
    rules = cuts(tokenizer)
    size = max(encode.PREFIX_CHARS, 2 * count)
    while rules is not None and size < len(text):
        cut = safe_cut(text, len(text) - size, *rules)
        if cut is None:  # one word to the end: look further back
            size *= 2
            continue
        encoding = counter.encode(text[cut:], add_special_tokens=False)
        if len(encoding.ids) >= count:
            offsets = [(cut + a, cut + b) for a, b in encoding.offsets[-count:]]
            return encoding.ids[-count:], offsets
        size *= 2
    encoding = counter.encode(text, add_special_tokens=False)
    return encoding.ids[-count:], encoding.offsets[-count:]
