"""Batch invariance: each row run alone, at its own length, against the same row inside other batches.

`bert14 check` compares a batch with PyTorch run on that same batch, which cannot see an engine whose
answer for a text depends on the texts beside it (per-tensor INT8 activation scales computed over the
whole batch, padding included, do). This section runs every row alone (batch 1, no padding), then in
seeded compositions of the kind the runtime and the server make:

    one call      all rows in one batch, padded to the longest
    groups        shuffled groups of 2..8 rows, each padded to its longest plus 0..16 extra positions
    reversed      the rows in reverse order, in groups of 4

and counts, over every (row, composition) pair, the rows bit-identical to "alone", the label flips
(the answer read as bert14/head.py reads it) and the largest logit and probability moves. A flip fails
the check. Padding is on the right, as the runtime pads (bert14/encode.py): the source model gives a
left-padded row other position ids, so left padding changes the answer in PyTorch too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from bert14.check.cases import Case
from bert14.head import disagreements, scores

SEED = 26
MAX_ROWS = 32  # rows drawn from the cases; each runs alone and in three compositions
GROUP_SIZES = (2, 8)  # shuffled groups of this many rows (inclusive)
EXTRA_PADDING = 16  # a group pads up to this many positions past its longest row
REVERSED_GROUP = 4


@dataclass(frozen=True)
class Row:
    ids: np.ndarray  # (L,) int64, the real tokens only
    token_type_ids: np.ndarray  # (L,) int64


@dataclass
class InvarianceReport:
    rows: int = 0
    comparisons: int = 0  # (row, composition) pairs
    identical: int = 0  # of those, logits bit-identical to the row alone
    flips: int = 0
    max_abs_logit_diff: float = 0.0
    max_abs_prob_diff: float = 0.0
    finite: bool = True

    @property
    def passed(self) -> bool:
        return self.finite and self.flips == 0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def rows_of(cases: list[Case], max_rows: int = MAX_ROWS, seed: int = SEED) -> list[Row]:
    """Up to `max_rows` rows of the right-padded cases, drawn seeded, as their real tokens."""
    rows = []
    for case in cases:
        for i in range(len(case.input_ids)):
            mask = case.attention_mask[i].astype(bool)  # (S,)
            length = int(mask.sum())
            if length and mask[:length].all():  # right-padded rows only (see the module's docstring)
                rows.append(Row(case.input_ids[i, :length].copy(), case.token_type_ids[i, :length].copy()))
    if len(rows) > max_rows:
        picked = np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False)
        rows = [rows[int(i)] for i in sorted(picked)]
    return rows


def batch_of(rows: list[Row], length: int) -> Case:
    """The rows right-padded to `length` (>= the longest) as one case."""
    ids = np.zeros((len(rows), length), np.int64)  # (B, S)
    types = np.zeros((len(rows), length), np.int64)  # (B, S)
    mask = np.zeros((len(rows), length), np.int64)  # (B, S)
    for i, row in enumerate(rows):
        ids[i, : len(row.ids)], types[i, : len(row.ids)], mask[i, : len(row.ids)] = row.ids, row.token_type_ids, 1
    return Case(f"invariance-b{len(rows)}xs{length}", ids, mask, types)


Group = tuple[list[int], int]  # row indices, the length they are padded to


def compositions(count: int, lengths: list[int], max_positions: int, seed: int = SEED) -> list[list[Group]]:
    """Each composition as [(row indices, padded length)], covering every row once."""
    rng = np.random.default_rng(seed)

    def padded(group: list[int], extra: int) -> Group:
        return group, min(max(lengths[i] for i in group) + extra, max_positions)

    one_call = [padded(list(range(count)), 0)]
    order = [int(i) for i in rng.permutation(count)]
    groups = []
    while order:
        size = int(rng.integers(GROUP_SIZES[0], GROUP_SIZES[1] + 1))
        groups.append(padded(order[:size], int(rng.integers(0, EXTRA_PADDING + 1))))
        order = order[size:]
    backwards = list(range(count))[::-1]
    reversed_groups = [padded(backwards[i : i + REVERSED_GROUP], 0) for i in range(0, count, REVERSED_GROUP)]
    return [one_call, groups, reversed_groups]


def check_invariance(
    run: Callable[[Case], np.ndarray], rows: list[Row], function: str, max_positions: int, seed: int = SEED
) -> InvarianceReport:
    """Every row alone against the same row in each composition (see the module's docstring)."""
    report = InvarianceReport(rows=len(rows))
    if not rows:
        return report
    alone = np.concatenate([run(batch_of([row], len(row.ids))) for row in rows])  # (N, C)
    report.finite = bool(np.isfinite(alone).all())
    alone_scores = scores(alone.astype(np.float64), function)
    for composition in compositions(len(rows), [len(r.ids) for r in rows], max_positions, seed):
        for group, length in composition:
            got = run(batch_of([rows[i] for i in group], length))  # (G, C)
            want = alone[group]  # (G, C)
            report.comparisons += len(group)
            report.identical += int((got == want).all(-1).sum())
            report.finite = report.finite and bool(np.isfinite(got).all())
            flipped, _ = disagreements(want, got, function, 0.0)
            report.flips += int(flipped.sum())
            moved = np.abs(got.astype(np.float64) - want)
            report.max_abs_logit_diff = max(report.max_abs_logit_diff, float(moved.max()))
            probs = np.abs(scores(got.astype(np.float64), function) - alone_scores[group])
            report.max_abs_prob_diff = max(report.max_abs_prob_diff, float(probs.max()))
    return report
