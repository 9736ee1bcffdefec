"""Accuracy-driven fallback: keep the layers INT8 hurts most in fp32 until a target is met.

1. Quantize everything (the baseline) and measure, on an evaluation set, how often the INT8
   label agrees with the fp32 reference label and how far the probabilities move.
2. Sensitivity: for each unit (the embedding, each encoder layer), quantize everything but that
   unit and measure the mean |probability difference| again; the error its fp32 copy removes is
   its sensitivity. (Label agreement alone is too coarse to rank: a trained model flips a handful
   of rows in a thousand.)
3. Rank units by sensitivity per megabyte of fp32 weights they would keep (the word-embedding
   table is four times a layer's size, so it must remove four times the error to go first), and
   keep them in fp32 one more at a time until the agreement (and, if set, the max |probability
   difference|) meets the target, or every unit is fp32 and it gives up.

The reference logits come from the caller (the export pipeline computes them with PyTorch);
this module needs only onnxruntime.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from bert14.check.compare import agreement
from bert14.check.runners import OrtRunner
from bert14.errors import QuantizeError
from bert14.head import SOFTMAX
from bert14.quantize.dynamic import DynamicOptions, QuantizeResult, quantize_dynamic_int8
from bert14.quantize.layers import layer_map

EMBEDDING = "embedding"


@dataclass(frozen=True)
class FallbackOptions:
    target_agreement: float = 0.995
    max_prob_diff: float | None = None
    score_function: str = SOFTMAX  # the model's head (bert14/head.py): what "agree" and "prob" mean


@dataclass(frozen=True)
class Score:
    agreement: float
    max_prob_diff: float
    mean_prob_diff: float

    def meets(self, options: FallbackOptions) -> bool:
        if self.agreement < options.target_agreement:
            return False
        return options.max_prob_diff is None or self.max_prob_diff <= options.max_prob_diff


@dataclass
class FallbackReport:
    target: dict[str, float | None]
    baseline: Score
    sensitivity: dict[str, float]  # unit -> error removed by keeping it fp32 (mean |dprob|)
    unit_mb: dict[str, float] = field(default_factory=dict)  # unit -> fp32 weight megabytes
    steps: list[dict[str, object]] = field(default_factory=list)
    kept_fp32: list[str] = field(default_factory=list)
    met: bool = False
    eval_rows: int = 0

    def to_manifest(self) -> dict[str, object]:
        data = asdict(self)
        data["baseline"] = asdict(self.baseline)
        return data

    def explain(self) -> str:
        lines = [f"baseline: agreement {self.baseline.agreement:.4f}, max |dprob| {self.baseline.max_prob_diff:.4f}"]
        for step in self.steps:
            lines.append(
                f"fp32 {step['kept_fp32']}: agreement {step['agreement']:.4f}, max |dprob| {step['max_prob_diff']:.4f}"
            )
        return "\n".join(lines)


def score(model: Path, batches: list[dict[str, np.ndarray]], reference: np.ndarray, function: str = SOFTMAX) -> Score:
    runner = OrtRunner(model, optimized=True)  # measured as it will be served
    logits = np.concatenate([runner.feeds(feeds) for feeds in batches])  # (N, C)
    measured = agreement(reference, logits, function)
    return Score(measured.agreement, measured.max_prob_diff, measured.mean_prob_diff)


def _unit_megabytes(model: onnx.ModelProto, units: dict[str, list[str]]) -> dict[str, float]:
    """fp32 megabytes of the initializers each unit's nodes read."""
    sizes = {init.name: int(np.prod(init.dims)) * 4 for init in model.graph.initializer}
    nodes = {node.name: node for node in model.graph.node}
    return {
        unit: sum(sizes.get(name, 0) for node in names for name in set(nodes[node].input)) / 1e6
        for unit, names in units.items()
    }


def accuracy_fallback(
    fused: Path,
    target: Path,
    batches: list[dict[str, np.ndarray]],
    reference: np.ndarray,
    base: DynamicOptions,
    cpu_flags: dict[str, bool],
    options: FallbackOptions,
    progress: Callable[[str], None] | None = None,
) -> tuple[QuantizeResult, FallbackReport]:
    """Write `target` (INT8 with the chosen units fp32) and report how it was chosen.
    `batches` are the evaluation inputs in order, `reference` their fp32 logits (N, C)."""
    say = progress or (lambda _: None)
    model = onnx.load(str(fused))
    mapping = layer_map(model)
    units = [f"layer {i}" for i in range(len(mapping.layers))]
    if not base.keep_embedding_fp32:  # already fp32 otherwise: nothing to choose
        units.insert(0, EMBEDDING)
    sizes = _unit_megabytes(
        model, {EMBEDDING: mapping.embedding, **{f"layer {i}": n for i, n in enumerate(mapping.layers)}}
    )
    del model

    def build(kept: list[str], path: Path) -> QuantizeResult:
        layer_ids = [int(u.split()[1]) for u in kept if u != EMBEDDING]
        embedding = base.keep_embedding_fp32 or EMBEDDING in kept
        opts = replace(base, keep_fp32_layers=layer_ids, keep_embedding_fp32=embedding)
        return quantize_dynamic_int8(fused, path, opts, cpu_flags)

    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "trial.onnx"
        result = build([], trial)
        baseline = score(trial, batches, reference, options.score_function)
        report = FallbackReport(
            {"agreement": options.target_agreement, "max_prob_diff": options.max_prob_diff},
            baseline,
            {},
            eval_rows=len(reference),
            unit_mb=sizes,
        )
        say(f"baseline agreement {baseline.agreement:.4f}")
        if baseline.meets(options):
            report.met = True
            trial.replace(target)
            return result, report
        for unit in units:
            build([unit], trial)
            report.sensitivity[unit] = (
                baseline.mean_prob_diff - score(trial, batches, reference, options.score_function).mean_prob_diff
            )
            say(f"sensitivity of {unit}: {report.sensitivity[unit]:.2e}")
        ranked = sorted(units, key=lambda u: report.sensitivity[u] / max(sizes[u], 1e-6), reverse=True)
        for count in range(1, len(ranked) + 1):
            kept = ranked[:count]
            result = build(kept, trial)
            current = score(trial, batches, reference, options.score_function)
            report.steps.append({"kept_fp32": kept, **asdict(current)})
            say(f"fp32 {kept}: agreement {current.agreement:.4f}")
            if current.meets(options):
                report.met, report.kept_fp32 = True, kept
                trial.replace(target)
                return result, report
    raise QuantizeError(
        f"INT8 could not reach agreement >= {options.target_agreement}"
        + (f" and max |dprob| <= {options.max_prob_diff}" if options.max_prob_diff is not None else "")
        + f" even with every layer in fp32:\n{report.explain()}\nuse the fp32 artifact, or lower the target"
    )
