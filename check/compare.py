"""The comparator: a candidate's logits against the reference's, with a named tolerance.

Every tolerance is a constant here with where it comes from; a precision's pass condition is a
Threshold. `compare` judges one case, `validate` runs a runner over cases against a reference,
`agreement` scores a whole evaluation set (the INT8 fallback's measure). Probabilities and
answers are read the way the model's head means them (bert14/head.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from bert14 import progress
from bert14.check.cases import Case
from bert14.errors import ParityError
from bert14.head import SOFTMAX, disagreements, scores

# An fp32 export must reproduce PyTorch fp32 to 1e-4 in every logit: it is the same arithmetic. Seen for
# BERT-14 size: ~1e-6; a real export bug (mask, positions, segment) moves logits by >1e-2.
FP32_LOGIT_ATOL = 1e-4
# The fp16 artifact run on the CPU provider (the export machine): weights rounded to fp16 move
# BERT-14's logits by up to ~1e-3 here; 1e-2 leaves room for larger checkpoints and still catches
# a broken conversion (a wrong cast moves them by O(1)). On CUDA it is checked by `make gpu-check`.
FP16_CPU_LOGIT_ATOL = 1e-2
# INT8 (dynamic, int8 weights): measured on the default BERT-14 and on the trained fixture
# (docs/numbers.md); a wrong scale or a dropped dequantization moves logits by O(1).
INT8_LOGIT_ATOL = 0.25


# ONNX Runtime's CUDA provider against PyTorch on the same GPU (TF32 off): cuBLAS/cuDNN reduction
# order moves fp32 logits by ~1e-5 (seen); fp16 weights and activations by ~2e-3 on BERT-14.
CUDA_FP32_LOGIT_ATOL = 1e-3
CUDA_FP16_LOGIT_ATOL = 5e-2


@dataclass(frozen=True)
class Threshold:
    """A precision's pass condition: max |logit diff| <= logit_atol; labels identical, except
    (where near_ties_allowed) a flip between two logits closer than 2 * logit_atol."""

    logit_atol: float
    near_ties_allowed: bool


THRESHOLDS = {
    "cpu": {
        "fp32": Threshold(FP32_LOGIT_ATOL, near_ties_allowed=False),
        "fp32_fused": Threshold(FP32_LOGIT_ATOL, near_ties_allowed=False),
        "fp16": Threshold(FP16_CPU_LOGIT_ATOL, near_ties_allowed=True),
        "fp16_seqlen": Threshold(FP16_CPU_LOGIT_ATOL, near_ties_allowed=True),
        "int8": Threshold(INT8_LOGIT_ATOL, near_ties_allowed=True),
        "int8_openvino": Threshold(INT8_LOGIT_ATOL, near_ties_allowed=True),
    },
    "cuda": {  # INT8 is a CPU artifact: ONNX Runtime's CUDA provider has no integer kernels for it
        "fp32": Threshold(CUDA_FP32_LOGIT_ATOL, near_ties_allowed=True),
        "fp32_fused": Threshold(CUDA_FP32_LOGIT_ATOL, near_ties_allowed=True),
        "fp16": Threshold(CUDA_FP16_LOGIT_ATOL, near_ties_allowed=True),
        "fp16_seqlen": Threshold(CUDA_FP16_LOGIT_ATOL, near_ties_allowed=True),
    },
}


@dataclass(frozen=True)
class CaseResult:
    case: str
    batch: int
    sequence: int
    max_abs_diff: float
    max_prob_diff: float
    mean_prob_diff: float
    argmax_agree: int
    near_tie_flips: int  # label changes between two logits closer than the tolerance allows for
    passed: bool



def compare(
    case: Case,
    reference: np.ndarray,
    candidate: np.ndarray,
    atol: float,
    strict_argmax: bool = True,
    function: str = SOFTMAX,
) -> CaseResult:
    """strict_argmax: every answer (top label; for a sigmoid head also the labels that apply) must
    match. Otherwise a difference counts as a failure only when it is not a near tie, one that
    moving each logit by atol can explain (bert14/head.py: disagreements)."""
    diff = float(np.abs(reference.astype(np.float64) - candidate.astype(np.float64)).max())
    flipped, near = disagreements(reference, candidate, function, atol)  # (B,), (B,)
    near_ties = int(near.sum())
    allowed = 0 if strict_argmax else near_ties
    batch, sequence = case.input_ids.shape
    passed = bool(np.isfinite(candidate).all()) and diff <= atol and int(flipped.sum()) <= allowed
    prob_diff = np.abs(scores(reference, function) - scores(candidate, function))  # (B, C)
    return CaseResult(
        case.name,
        batch,
        sequence,
        diff,
        float(prob_diff.max()),
        float(prob_diff.mean()),
        int((~flipped).sum()),
        near_ties,
        passed,
    )


def validate(
    reference: Callable[[Case], np.ndarray],
    runner: Callable[[Case], np.ndarray],
    cases: list[Case],
    atol: float,
    strict_argmax: bool = True,
    function: str = SOFTMAX,
) -> list[CaseResult]:
    """Each case through the reference and the runner, compared; progress reported per case."""
    results = []
    for done, case in enumerate(cases, start=1):
        results.append(compare(case, reference(case), runner(case), atol, strict_argmax, function))
        progress.step(done, len(cases))
    return results


@dataclass(frozen=True)
class Agreement:
    """How a candidate's answers agree with the reference's over a whole evaluation set."""

    agreement: float  # share of rows whose answer is identical (no near-tie allowance)
    max_prob_diff: float
    mean_prob_diff: float
    flips: int  # rows whose answer changed
    max_abs_logit_diff: float


def agreement(reference: np.ndarray, candidate: np.ndarray, function: str = SOFTMAX) -> Agreement:
    diff = np.abs(scores(reference, function) - scores(candidate, function))  # (N, C)
    flipped, _ = disagreements(reference, candidate, function, atol=0.0)  # (N,)
    logit = float(np.abs(reference.astype(np.float64) - candidate.astype(np.float64)).max())
    return Agreement(float((~flipped).mean()), float(diff.max()), float(diff.mean()), int(flipped.sum()), logit)


def format_table(results: list[CaseResult], atol: float) -> str:
    lines = [f"{'case':<18} {'max |logit diff|':>17} {'argmax':>8}  (tolerance {atol:g})"]
    for r in results:
        status = "ok" if r.passed else "FAIL"
        ties = f" ({r.near_tie_flips} near-tie flip{'s' if r.near_tie_flips > 1 else ''})" if r.near_tie_flips else ""
        lines.append(f"{r.case:<18} {r.max_abs_diff:>17.3e} {r.argmax_agree:>4}/{r.batch:<3}  {status}{ties}")
    return "\n".join(lines)


def summarize(results: list[CaseResult], atol: float) -> dict[str, object]:
    return {
        "tolerance_logit_abs": atol,
        "max_abs_logit_diff": max(r.max_abs_diff for r in results),
        "max_abs_prob_diff": max(r.max_prob_diff for r in results),
        "mean_abs_prob_diff": sum(r.mean_prob_diff * r.batch for r in results) / sum(r.batch for r in results),
        "argmax_agreement": sum(r.argmax_agree for r in results) / sum(r.batch for r in results),
        "near_tie_flips": sum(r.near_tie_flips for r in results),
        "passed": all(r.passed for r in results),
        "cases": [asdict(r) for r in results],
    }


def require_pass(results: list[CaseResult], atol: float, what: str) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        raise ParityError(
            f"{what} does not match PyTorch in {len(failed)} of {len(results)} cases "
            f"(expected max |logit diff| <= {atol:g} and identical argmax):\n{format_table(failed, atol)}"
        )
