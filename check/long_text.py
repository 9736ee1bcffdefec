"""`bert14 check --long-text S`: a strategy's answers against PyTorch fed the same token selection.

    texts --transformers' tokenizer--> the whole text's ids --the strategy, written again here--> rows
          --PyTorch--> logits per row --softmax, pooled as S says--> the reference's scores per text
    texts --the runtime (Classifier, as served, each CPU engine and precision)--> rows, scores per text

Checked per text: the runtime chose exactly the reference's token ids, row for row (so head+tail and
the windows' bounds are what the strategy says, not what both sides happen to share); each row's
logits are within the artifact's tolerance (check/compare.py); the pooled scores, and the label, agree.
The reference tokenizes the whole text, never a prefix or suffix, with transformers' BertTokenizer
built from the artifact's vocabulary and settings, or AutoTokenizer over RoBERTa's and XLM-R's
tokenizer.json (what the runtime's own pipeline is held to), and selects the tokens with its own few lines below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bert14 import progress
from bert14.artifact import MODEL_FILES, OPENVINO_INT8_FILE, VOCAB_FILE, read_manifest
from bert14.check.cases import Case
from bert14.check.compare import THRESHOLDS
from bert14.check.reference import TorchReference, source_of
from bert14.encode import Encoded, buckets
from bert14.family import DEFAULT_FAMILY, ModelFamily
from bert14.head import scores
from bert14.long_text import HEAD_TAIL, TRUNCATE, WINDOWS, LongText
from bert14.runtime.classifier import Classifier
from bert14.runtime.engines import openvino as openvino_engine
from bert14.tokenizer import read_settings

# The runtime configurations a long-text check runs on the CPU: (precision, engine), when the artifact has them.
CONFIGURATIONS = (("fp32", "onnxruntime"), ("int8", "onnxruntime"), ("int8", "openvino"))
KEY_OF = {name: key for key, name in MODEL_FILES.items()}


def reference_tokenizer(directory: Path, family: ModelFamily = DEFAULT_FAMILY):  # noqa: ANN201 - transformers' type
    """transformers' BertTokenizer over the artifact's vocabulary and settings; for a tokenizer.json family
    (RoBERTa's BPE, XLM-R's Unigram), transformers' AutoTokenizer over the artifact's files."""
    from transformers import AutoTokenizer, BertTokenizer

    if family.tokenizer != "WordPiece":
        return AutoTokenizer.from_pretrained(str(directory), model_max_length=1 << 30)
    settings = asdict(read_settings(directory))  # BertTokenizer's own keyword names
    # model_max_length: the whole text; the selection below is the reference's own.
    return BertTokenizer(str(directory / VOCAB_FILE), **(settings | {"model_max_length": 1 << 30}))


def reference_rows(tokenizer, text: str, spec: LongText, max_length: int) -> tuple[list[list[int]], bool]:  # noqa: ANN001
    """(rows of ids with special tokens, truncated) for `text` under `spec`, from transformers' ids."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    body = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    spec = spec.fitted(body)  # what it leaves to the model, as the runtime fills it in
    n = len(ids)
    if spec.strategy == TRUNCATE or n <= body:
        pieces, truncated = [ids[:body]], n > body
    elif spec.strategy == HEAD_TAIL:
        tail = body - spec.head_tokens
        pieces, truncated = [ids[: spec.head_tokens] + (ids[n - tail :] if tail else [])], True
    else:  # windows: `stride` apart while they end before the text does, then one that ends with it
        starts = []
        start = 0
        while start + body < n:
            starts.append(start)
            start += spec.stride
        starts.append(n - body)
        truncated = len(starts) > spec.max_windows
        if truncated:
            starts = [k * spec.stride for k in range(spec.max_windows)]
        pieces = [ids[s : s + body] for s in starts]
    # The single-text template, as transformers writes it ([CLS] A [SEP], <s> A </s>); transformers 5's
    # tokenizers have no build_inputs_with_special_tokens any more.
    return [[tokenizer.cls_token_id, *piece, tokenizer.sep_token_id] for piece in pieces], truncated


def pooled(probs: np.ndarray, spec: LongText) -> np.ndarray:
    """(C,) a text's scores from its rows' (W, C)."""
    if spec.strategy != WINDOWS:
        return probs[0]
    return probs.mean(axis=0) if spec.pool == "mean" else probs.max(axis=0)


@dataclass
class LongTextReport:
    key: str
    file: str
    texts: int = 0
    rows: int = 0
    selection_mismatches: list[int] = field(default_factory=list)  # texts whose rows' ids differ
    max_abs_logit_diff: float = 0.0
    max_abs_prob_diff: float = 0.0  # pooled scores
    flips: int = 0  # texts whose label differs from the reference's
    near_tie_flips: int = 0
    logit_atol: float = 0.0
    near_ties_allowed: bool = False

    @property
    def passed(self) -> bool:
        flips = self.flips - self.near_tie_flips if self.near_ties_allowed else self.flips
        return not self.selection_mismatches and self.max_abs_logit_diff <= self.logit_atol and flips == 0

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "passed": self.passed}


def check_long_text(
    directory: Path, texts: list[str], spec: LongText, model_dir: Path | None = None
) -> dict[str, object]:
    """{"strategy": spec's fields, "runs": {artifact key: LongTextReport as a dict}} on the CPU."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    tokenizer = reference_tokenizer(directory, manifest.model.family)
    progress.stage("rebuilding the source model")
    reference = TorchReference(source_of(manifest, model_dir).model)
    runs: dict[str, dict[str, object]] = {}
    wanted = []
    for precision, engine in CONFIGURATIONS:
        if engine == "openvino":
            if OPENVINO_INT8_FILE not in manifest.files:
                continue
            if not openvino_engine.available():
                progress.stage(f"skipping {OPENVINO_INT8_FILE}: {openvino_engine.INSTALL_HINT}")
                continue
        wanted.append((precision, engine))
    expected: list[tuple[list[list[int]], bool]] | None = None
    reference_scores: list[np.ndarray] = []
    reference_logits: list[np.ndarray] = []
    for precision, engine in wanted:
        clf = Classifier.load(directory, precision=precision, provider="cpu", engine=engine, long_text=spec)
        spec = clf.options.long_text  # what the spec left to the model, fitted to it
        key = KEY_OF[clf.model_file]
        if key in runs:
            continue  # fp32 answered by a file already checked
        if expected is None:
            expected = [reference_rows(tokenizer, text, spec, clf.max_length) for text in texts]
            progress.stage(f"PyTorch on the reference's {sum(len(r) for r, _ in expected)} rows")
            for index, (rows, _) in enumerate(expected):
                logits = _torch(reference, rows, f"long-text-{index}")  # (W, C)
                reference_logits.append(logits)
                reference_scores.append(pooled(scores(logits, reference.function), spec))
        progress.stage(f"{MODEL_FILES[key]}: {spec.strategy} on {len(texts)} texts against PyTorch")
        threshold = THRESHOLDS["cpu"][key]
        report = LongTextReport(key, MODEL_FILES[key], logit_atol=threshold.logit_atol,
                                near_ties_allowed=threshold.near_ties_allowed)  # fmt: skip
        docs = clf.documents(texts)
        predictions = clf.predict(texts)
        got_scores = np.stack([[p.probs[label] for label in clf.labels] for p in predictions])  # (N, C)
        want_scores = np.stack(reference_scores)  # (N, C)
        for index, (doc, (rows, truncated)) in enumerate(zip(docs, expected, strict=True)):
            report.texts += 1
            report.rows += len(doc.rows)
            if [row.ids for row in doc.rows] != rows or doc.truncated != truncated:
                report.selection_mismatches.append(index)
                continue
            got = clf.row_logits(list(doc.rows))  # (W, C)
            diff = float(np.abs(got - reference_logits[index]).max())
            report.max_abs_logit_diff = max(report.max_abs_logit_diff, diff)
        report.max_abs_prob_diff = float(np.abs(got_scores - want_scores).max()) if texts else 0.0
        report.flips, report.near_tie_flips = _flips(want_scores, got_scores, threshold.logit_atol)
        runs[key] = report.to_dict()
    return {"strategy": spec.__dict__, "texts": len(texts), "runs": runs}


def _flips(want: np.ndarray, got: np.ndarray, atol: float) -> tuple[int, int]:
    """(texts whose top label differs, those of them that are near ties). Logits within atol move a
    softmax or sigmoid score by at most atol / 2, so the gap between two labels' pooled scores (means or
    maxima of such scores) by at most atol: a flip is a near tie when the reference's gap is within it."""
    rows = np.arange(len(want))
    want_top, got_top = want.argmax(-1), got.argmax(-1)  # (N,)
    flipped = want_top != got_top
    near = flipped & (want[rows, want_top] - want[rows, got_top] <= atol)
    return int(flipped.sum()), int(near.sum())


def _torch(reference: TorchReference, rows: list[list[int]], name: str) -> np.ndarray:
    """PyTorch's logits (W, C) for rows of ids, right-padded in batches (`name`: unique, the cache's key)."""
    encoded = [Encoded(ids, [0] * len(ids), False) for ids in rows]
    out = np.zeros((len(rows), 0), dtype=np.float32)
    for index, batch in enumerate(buckets(encoded, max_batch=16, max_tokens=8192)):
        case = Case(f"{name}-{index}", batch.input_ids, batch.attention_mask, batch.token_type_ids)
        logits = reference(case)  # (B, C)
        if out.shape[1] == 0:
            out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        out[batch.indices] = logits
    return out


def format_long_text(result: dict[str, object]) -> str:
    spec = result["strategy"]
    lines = [f"long text {spec['strategy']} ({', '.join(f'{k} {v}' for k, v in spec.items() if k != 'strategy')}), "  # type: ignore[union-attr]
             f"{result['texts']} texts, against PyTorch fed transformers' token selection:"]  # fmt: skip
    for key, run in result["runs"].items():  # type: ignore[union-attr]
        verdict = "ok" if run["passed"] else "FAIL"
        lines.append(
            f"{key:<13} {run['rows']:>5} rows  selection {run['texts'] - len(run['selection_mismatches'])}/"
            f"{run['texts']} identical  max|dlogit| {run['max_abs_logit_diff']:.3e} (<= {run['logit_atol']:g})  "
            f"max|dprob| {run['max_abs_prob_diff']:.3e}  label flips {run['flips']}  {verdict}"
        )
    return "\n".join(lines)


def long_text_failures(result: dict[str, object]) -> list[str]:
    out = []
    for key, run in result["runs"].items():  # type: ignore[union-attr]
        if not run["passed"]:
            why = []
            if run["selection_mismatches"]:
                why.append(f"token selection differs from transformers' on texts {run['selection_mismatches'][:5]}")
            if run["max_abs_logit_diff"] > run["logit_atol"]:
                why.append(f"max |logit diff| {run['max_abs_logit_diff']:.3g} over {run['logit_atol']:g}")
            if run["flips"]:
                why.append(f"{run['flips']} label flips")
            out.append(f"long text {result['strategy']['strategy']} on {key}: " + "; ".join(why))  # type: ignore[index]
    return out
