"""The inputs every parity check runs: a fixed seeded suite, a random suite, and real texts.

validation_suite: batch 1, 4 and 32 x sequence 1, 16, 128 and 512 (capped at the model's
positions); right- or left-padded masks of random lengths (the first row of each batch is
full-length); a second segment of token_type 1 in every row long enough for one; ids drawn from
the whole vocabulary. random_cases: batch 1..32, lengths 1..512, alternating padding sides.
text_cases: texts tokenized with the artifact's own tokenizer, in length buckets. Every row is
filed under the bucket of its real length: 1-16, 17-64, 65-128, 129-512, or "truncated".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bert14.encode import ModelInputs, buckets, encode
from bert14.family import DEFAULT_FAMILY, ModelFamily
from bert14.tokenizer import load_tokenizer

SUITE_BATCHES = (1, 4, 32)
SUITE_SEQUENCES = (1, 16, 128, 512)
SUITE_SEED = 2026


@dataclass(frozen=True)
class Case(ModelInputs):
    name: str
    input_ids: np.ndarray  # (B, S) int64
    attention_mask: np.ndarray  # (B, S) int64
    token_type_ids: np.ndarray  # (B, S) int64


def make_case(
    rng: np.random.Generator, batch: int, sequence: int, vocab_size: int, type_vocab_size: int, left_pad: bool = False
) -> Case:
    ids = rng.integers(0, vocab_size, size=(batch, sequence), dtype=np.int64)  # (B, S)
    lengths = rng.integers(1, sequence + 1, size=batch)
    lengths[0] = sequence  # at least one row uses every position
    positions = np.arange(sequence)[None, :]  # (1, S)
    if left_pad:
        mask = positions >= (sequence - lengths)[:, None]  # (B, S)
        starts = sequence - lengths
    else:
        mask = positions < lengths[:, None]  # (B, S)
        starts = np.zeros(batch, dtype=np.int64)
    token_type = np.zeros((batch, sequence), dtype=np.int64)
    if type_vocab_size > 1:
        splits = starts + rng.integers(1, np.maximum(lengths, 2), size=batch)  # second segment begins here
        token_type = (positions >= splits[:, None]) & mask
    ids = np.where(mask, ids, 0)
    side = "left" if left_pad else "right"
    return Case(f"b{batch}xs{sequence}-{side}", ids, mask.astype(np.int64), token_type.astype(np.int64))


def validation_suite(
    vocab_size: int, type_vocab_size: int, max_positions: int, seed: int = SUITE_SEED, left_pad: bool = False
) -> list[Case]:
    rng = np.random.default_rng(seed)
    sequences = sorted({min(s, max_positions) for s in SUITE_SEQUENCES})
    return [
        make_case(rng, batch, sequence, vocab_size, type_vocab_size, left_pad)
        for batch in SUITE_BATCHES
        for sequence in sequences
    ]


BUCKETS = ((1, 16), (17, 64), (65, 128), (129, 512))
TRUNCATED = "truncated"
# Artifacts whose attention reads sequence lengths: only right-padded inputs mean what they say.
RIGHT_PADDING_ONLY = {"fp16_seqlen"}
RANDOM_SEED = 14
RANDOM_CASES = 10
RANDOM_TOKEN_BUDGET = 40_000  # padded tokens over the whole random suite: minutes, not hours, at full size


SAMPLE_TEXTS = [
    "央行宣布降准0.5个百分点 释放长期资金约1万亿元",
    "湖人主场险胜勇士 詹姆斯砍下三双",
    "新款折叠屏手机发布 搭载自研芯片",
    "北京二手房成交量环比上涨两成",
    "双色球第2026138期开奖 头奖8注",
    "教育部：今年高考报名人数再创新高",
    "沪指午后翻红 券商板块领涨",
    "秋冬流行色盘点：焦糖色成为主角",
    "客厅装修的五个小技巧",
    "国务院常务会议部署稳就业举措",
    "网络游戏防沉迷新规落地",
    "十二星座本周运势",
    "某明星新片首映 票房破亿",
    "社区志愿者帮助独居老人",
    "",
    "   ",
    "Apple发布iOS 27正式版",
    "记者从市交通委获悉，" + "地铁新线将于年底开通运营，" * 80,  # > 512 tokens: the truncated bucket
    "本报讯 " + "经济运行总体平稳，主要指标好于预期。" * 60,
]


def _bucket(length: int) -> str:
    return next(f"{lo}-{hi}" for lo, hi in BUCKETS if lo <= length <= hi)


def text_cases(
    directory: Path, texts: list[str], max_length: int, family: ModelFamily = DEFAULT_FAMILY
) -> list[tuple[Case, list[str]]]:
    """The texts as cases of right-padded batches (the family's pad id), each row labelled with its bucket."""
    tokenizer, settings = load_tokenizer(directory, family)
    encoded = encode(tokenizer, texts, None, max_length)
    cases = []
    pad_id = tokenizer.token_to_id(settings.pad_token) or 0
    for index, batch in enumerate(buckets(encoded, max_batch=16, max_tokens=8192, pad_id=pad_id)):
        labels = [TRUNCATED if encoded[i].truncated else _bucket(len(encoded[i].ids)) for i in batch.indices]
        case = Case(f"texts-{index}", batch.input_ids, batch.attention_mask, batch.token_type_ids)
        cases.append((case, labels))
    return cases


def random_cases(vocab_size: int, type_vocab_size: int, max_positions: int) -> list[tuple[Case, list[str]]]:
    rng = np.random.default_rng(RANDOM_SEED)
    cases = []
    budget = RANDOM_TOKEN_BUDGET
    for index in range(RANDOM_CASES):
        sequence = int(rng.integers(1, max_positions + 1))
        batch = int(rng.integers(1, 33))
        batch = max(1, min(batch, budget // max(sequence, 1) // max(RANDOM_CASES - index, 1)))
        budget -= batch * sequence
        case = make_case(rng, batch, sequence, vocab_size, type_vocab_size, left_pad=bool(index % 2))
        case = Case(f"random-{index}-{case.name}", case.input_ids, case.attention_mask, case.token_type_ids)
        cases.append((case, [_bucket(int(n)) for n in case.attention_mask.sum(1)]))
    return cases
