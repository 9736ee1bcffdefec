"""`bert14 check`: every artifact in a directory against the PyTorch source, on real text and on
adversarial shapes, with disagreements located by sequence-length bucket.

The source is the one the manifest records (the default model is rebuilt from its seed, a
checkpoint is read again). Inputs: the texts given (default: SAMPLE_TEXTS, which includes texts
longer than 512 tokens), tokenized with the artifact's own tokenizer; plus a seeded random suite
(ids over the whole vocabulary, batch 1..32, lengths 1..512, right and left padding). Every row is
filed under the bucket of its real length: 1-16, 17-64, 65-128, 129-512, or "truncated".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bert14 import progress
from bert14.artifact import MODEL_FILES, read_manifest, verify_files
from bert14.errors import ArtifactError
from bert14.export.validate import (
    FP16_CPU_LOGIT_ATOL,
    FP32_LOGIT_ATOL,
    INT8_LOGIT_ATOL,
    Case,
    References,
    make_case,
    reference_session,
)
from bert14.head import SOFTMAX, disagreements, scores

BUCKETS = ((1, 16), (17, 64), (65, 128), (129, 512))
TRUNCATED = "truncated"
RANDOM_SEED = 14
RANDOM_CASES = 10
RANDOM_TOKEN_BUDGET = 40_000  # padded tokens over the whole random suite: minutes, not hours, at full size


@dataclass(frozen=True)
class Threshold:
    """A precision's pass condition: max |logit diff| <= logit_atol; labels identical, except
    (where near_ties_allowed) a flip between two logits closer than 2 * logit_atol."""

    logit_atol: float
    near_ties_allowed: bool


THRESHOLDS = {
    "fp32": Threshold(FP32_LOGIT_ATOL, near_ties_allowed=False),
    "fp32_fused": Threshold(FP32_LOGIT_ATOL, near_ties_allowed=False),
    "fp16": Threshold(FP16_CPU_LOGIT_ATOL, near_ties_allowed=True),
    "fp16_seqlen": Threshold(FP16_CPU_LOGIT_ATOL, near_ties_allowed=True),
    "int8": Threshold(INT8_LOGIT_ATOL, near_ties_allowed=True),
}
# Artifacts whose attention reads sequence lengths: only right-padded inputs mean what they say.
RIGHT_PADDING_ONLY = {"fp16_seqlen"}

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


@dataclass
class Row:
    bucket: str
    reference: np.ndarray  # (C,)
    candidate: np.ndarray  # (C,)


@dataclass
class ArtifactReport:
    name: str
    file: str
    threshold: Threshold
    hash_ok: bool
    function: str = SOFTMAX  # how the logits are read (bert14/head.py): probabilities and answers follow it
    rows: list[Row] = field(default_factory=list)

    def _stats(self, rows: list[Row]) -> dict[str, object]:
        ref = np.stack([r.reference for r in rows]).astype(np.float64)  # (N, C)
        got = np.stack([r.candidate for r in rows]).astype(np.float64)  # (N, C)
        logit = np.abs(ref - got)
        prob = np.abs(scores(ref, self.function) - scores(got, self.function))
        flipped, near_ties = disagreements(ref, got, self.function, self.threshold.logit_atol)  # (N,), (N,)
        bad_flips = int((flipped & ~near_ties).sum()) if self.threshold.near_ties_allowed else int(flipped.sum())
        finite = bool(np.isfinite(got).all())
        return {
            "rows": len(rows),
            "max_abs_logit_diff": float(logit.max()),
            "mean_abs_logit_diff": float(logit.mean()),
            "max_abs_prob_diff": float(prob.max()),
            "top1_agreement": float((~flipped).mean()),
            "near_tie_flips": int(near_ties.sum()),
            "passed": finite and float(logit.max()) <= self.threshold.logit_atol and bad_flips == 0,
        }

    def summary(self) -> dict[str, object]:
        overall = self._stats(self.rows)
        buckets = {}
        for name in [f"{lo}-{hi}" for lo, hi in BUCKETS] + [TRUNCATED]:
            rows = [r for r in self.rows if r.bucket == name]
            if rows:
                buckets[name] = self._stats(rows)
        failed = [name for name, stats in buckets.items() if not stats["passed"]]
        return {
            "file": self.file,
            "threshold": {
                "logit_atol": self.threshold.logit_atol,
                "near_ties_allowed": self.threshold.near_ties_allowed,
            },
            "sha256_matches_manifest": self.hash_ok,
            "score_function": self.function,
            **overall,
            "passed": bool(overall["passed"]) and self.hash_ok,
            "failed_buckets": failed,
            "buckets": buckets,
        }


def _bucket(length: int) -> str:
    return next(f"{lo}-{hi}" for lo, hi in BUCKETS if lo <= length <= hi)


def text_cases(directory: Path, texts: list[str], max_length: int) -> list[tuple[Case, list[str]]]:
    """The texts as cases of right-padded batches, each row labelled with its bucket."""
    from bert14.encode import buckets, encode
    from bert14.tokenizer import load_tokenizer

    tokenizer, _ = load_tokenizer(directory)
    encoded = encode(tokenizer, texts, None, max_length)
    cases = []
    for index, batch in enumerate(buckets(encoded, max_batch=16, max_tokens=8192)):
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


def check_artifact(
    directory: Path, texts: list[str] | None = None, model_dir: Path | None = None
) -> dict[str, dict[str, object]]:
    """{artifact key: summary} for every artifact present; see ArtifactReport.summary for fields.
    `model_dir`: where the source checkpoint is now, if not where it was exported from."""
    from bert14.export.model import rebuild

    directory = Path(directory)
    manifest = read_manifest(directory)
    # Tokenizer and config files are checked first and whole: a swapped tokenizer.json fails the
    # check here, naming the file, before minutes of comparisons (model files are reported per row).
    verify_files(directory, manifest, sorted(set(manifest.files) - set(MODEL_FILES.values())))
    present = [key for key in MODEL_FILES if manifest.file_of(key)]
    if not present:
        raise ArtifactError(f"{directory}: the manifest lists no model file")
    model_info = manifest.model
    progress.stage("rebuilding the source model")
    source = rebuild(manifest.source, manifest.source.get("attn_implementation", "sdpa"), model_dir)
    references = References(source.model)
    cases = text_cases(directory, texts if texts is not None else SAMPLE_TEXTS, model_info.max_position_embeddings)
    cases += random_cases(
        model_info.vocab_size, model_info.type_vocab_size, model_info.max_position_embeddings
    )
    reports = {}
    for key in present:
        name = MODEL_FILES[key]
        try:
            verify_files(directory, manifest, [name])
            hash_ok = True
        except ArtifactError:
            hash_ok = False
        report = ArtifactReport(key, name, THRESHOLDS[key], hash_ok, references.function)
        progress.stage(f"checking {name} against PyTorch ({len(cases)} batches)")
        session = reference_session(directory / name)
        for done, (case, buckets) in enumerate(cases, start=1):
            if not (key in RIGHT_PADDING_ONLY and case.name.endswith("-left")):
                got = session.run(["logits"], case.feeds())[0]
                want = references(case)
                report.rows += [Row(b, want[i], got[i]) for i, b in enumerate(buckets)]
            progress.step(done, len(cases))
        reports[key] = report.summary()
    return reports


def format_report(reports: dict[str, dict[str, object]]) -> str:
    lines = [
        f"{'artifact':<11} {'bucket':<10} {'rows':>5} {'max|dlogit|':>12} {'mean|dlogit|':>13} "
        f"{'max|dprob|':>11} {'top-1':>7}  result"
    ]
    for key, summary in reports.items():
        rows = [("all", summary)] + list(summary["buckets"].items())  # type: ignore[union-attr]
        for bucket, stats in rows:
            verdict = "ok" if stats["passed"] else "FAIL"
            lines.append(
                f"{key:<11} {bucket:<10} {stats['rows']:>5} {stats['max_abs_logit_diff']:>12.3e} "
                f"{stats['mean_abs_logit_diff']:>13.3e} {stats['max_abs_prob_diff']:>11.3e} "
                f"{stats['top1_agreement']:>7.4f}  {verdict}"
            )
        if not summary["sha256_matches_manifest"]:
            lines.append(f"{key:<11} {summary['file']} does not match the sha256 in manifest.json")
        threshold = summary["threshold"]
        lines.append(
            f"{'':<11} threshold: max |logit diff| <= {threshold['logit_atol']:g}"  # type: ignore[index]
            + (", near-tie flips allowed" if threshold["near_ties_allowed"] else ", identical labels")  # type: ignore[index]
        )
    return "\n".join(lines)


def failures(reports: dict[str, dict[str, object]]) -> list[str]:
    out = []
    for key, summary in reports.items():
        if not summary["passed"]:
            where = ", ".join(summary["failed_buckets"]) or "overall"  # type: ignore[arg-type]
            hashed = "" if summary["sha256_matches_manifest"] else "; file differs from the manifest's sha256"
            out.append(f"{key} ({summary['file']}): fails in bucket(s) {where}{hashed}")
    return out
