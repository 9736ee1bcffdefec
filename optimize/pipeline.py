"""The fusion pipeline: an explicit ordered list of passes, a report of what fused, and a gate.

    upgrade           opset >= 18 (ReduceMean's axes become an input), shape inference
    layer_norm        decomposed LayerNorm -> LayerNormalization            (older exports)
    canonicalize      Gemm -> MatMul + Add, constant folding, shape simplification
    embed_layer_norm  word + type + position Gathers + LayerNorm -> EmbedLayerNormalization
    attention         Q/K/V projections ... Softmax ... context -> Attention (packed QKV)
    retype            drop replaced nodes, propagate shapes through the fused ops (shapes.py)
    skip_layer_norm   bias + residual Add + LayerNorm -> SkipLayerNormalization
    gelu              bias Add + GELU -> BiasGelu (erf form) or FastGelu (tanh form)
    first_token       the last layer's work after attention runs on the head's token 0 only
    mask_index        opt-in: Attention reads sequence lengths, not the 2-D mask (mask_index.py;
                      right padding only: the CUDA fp16 file model.fp16.seqlen.onnx is built with it)
    retype_final      the same once more at the end: no dead nodes, every value typed

Every pass returns a PassResult (passes.py): what it rewrote and, one line each, why it refused
the candidates it did not. Each pass is declared once, as a `Pass` in PASSES: its name, its run,
what the gate expects of it, and whether a user may switch it off by name
(`OptimizeOptions(skip=...)`, `bert14 optimize --skip NAME`; the gate then expects what the
others make), or an opt-in pass switched on (`OptimizeOptions(include=...)`, `--with NAME`). A
rule refuses a candidate one way, by raising passes.Refusal. To add a fusion: a family module with
a `fuse_*(model) -> PassResult`, one `Pass` in PASSES (with `expects`), its op in the family's
`fused_ops` (bert14/family.py), a positive and a near-miss rule test.

The order matters: the LayerNorm rule runs before constant folding, which drops the tiny
`Add(variance, 1e-12)` of a decomposed LayerNorm and so breaks its pattern;
EmbedLayerNormalization must claim the embedding LayerNorm before the skip rule mistakes it for a
residual connection; attention must fuse before the skip rule rewrites the Adds around it.
For a BERT of L layers the expected result is 1 / L / 2L / L
(EmbedLayerNormalization / Attention / SkipLayerNormalization / BiasGelu or FastGelu) with no Softmax,
LayerNormalization or ReduceMean left over; anything short fails with the reasons collected.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
import onnxscript.optimizer
from onnxscript.rewriter import rewrite
from onnxscript.rewriter.ort_fusions import shape_optimization
from onnxscript.rewriter.rules.common import _gemm_to_matmul_add
from onnxscript.version_converter import convert_version

from bert14.errors import FusionError, InputError
from bert14.family import DEFAULT_FAMILY, ModelFamily
from bert14.optimize.attention import fuse_attention
from bert14.optimize.embed_layer_norm import fuse_embed_layer_norm
from bert14.optimize.first_token import run_tail_on_first_token
from bert14.optimize.gelu import fuse_gelu, gelu_counts
from bert14.optimize.graph import MS_DOMAIN, count_ops
from bert14.optimize.layer_norm import fuse_decomposed_layer_norm
from bert14.optimize.mask_index import use_sequence_lengths
from bert14.optimize.passes import PassResult
from bert14.optimize.shapes import propagate_shapes
from bert14.optimize.skip_layer_norm import fuse_skip_layer_norm

MIN_OPSET = 18  # ReduceMean takes axes as an input from 18 on, which the LayerNorm rule matches
LEFTOVER_OPS = ("Softmax", "LayerNormalization", "ReduceMean", "Erf")


@dataclass
class OptimizeOptions:
    num_layers: int | None = None  # expected L; None: the number of Softmax nodes before fusion
    num_heads: int | None = None  # only needed when the graph's shapes do not show the head size
    debug: bool = False  # also collect why onnxscript's rules refused their closest candidates
    gate: bool = True  # raise FusionError when the counts fall short
    skip: frozenset[str] = frozenset()  # fusion passes to switch off (Pass.skippable); the gate expects the rest
    include: frozenset[str] = frozenset()  # opt-in passes to switch on (Pass.opt_in)
    family: ModelFamily = DEFAULT_FAMILY  # whose fused ops the report counts (bert14/family.py), + the GELU op


@dataclass
class FusionReport:
    counts: dict[str, int]
    expected: dict[str, int]
    leftovers: dict[str, int]
    reasons: dict[str, list[str]] = field(default_factory=dict)  # pass -> its refusals (PassResult.refused)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def shortfalls(self) -> list[str]:
        problems = [
            f"{op}: {self.counts.get(op, 0)} fused, expected {want}"
            for op, want in self.expected.items()
            if self.counts.get(op, 0) != want
        ]
        problems += [f"{op}: {n} left unfused" for op, n in self.leftovers.items() if n]
        return problems

    def to_manifest(self) -> dict[str, object]:
        data = asdict(self)
        if not data["skipped"]:
            data.pop("skipped")  # a full run's manifest reads as before
        return data

    def explain(self) -> str:
        lines = self.shortfalls()
        for family, reasons in self.reasons.items():
            for reason in reasons[:5]:
                lines.append(f"  {family}: {reason}")
            if len(reasons) > 5:
                lines.append(f"  {family}: ... {len(reasons) - 5} more")
        return "\n".join(lines)


def upgrade(model: ir.Model) -> None:
    if model.opset_imports.get("", 0) < MIN_OPSET:
        convert_version(model, MIN_OPSET, fallback=True)
    # Rules match attributes literally: an omitted keepdims=1 must be spelled out to match.
    common_passes.AddDefaultAttributesPass()(model)
    common_passes.ShapeInferencePass()(model)


def canonicalize(model: ir.Model) -> None:
    rewrite(model, [_gemm_to_matmul_add.gemm_to_matmul_add_rule])
    common_passes.ShapeInferencePass()(model)
    onnxscript.optimizer.optimize(model)
    shape_optimization.rules.apply_to_model(model)
    onnxscript.optimizer.optimize(model)


def retype(model: ir.Model) -> None:
    """Drop the replaced nodes (they still declare the fused outputs' names) and give every value
    its dims and type again: rules compare symbolic dims, and tools that read the result
    (quantize_dynamic among them) run ONNX's shape inference, which cannot type contrib ops."""
    model.opset_imports[MS_DOMAIN] = 1
    common_passes.RemoveUnusedNodesPass()(model)
    propagate_shapes(model)


# What a pass's run does: change the model in place and say what it did (passes.py).
Run = Callable[[ir.Model, "OptimizeOptions"], PassResult]


@dataclass(frozen=True)
class Pass:
    """One step of the pipeline, declared once: its name, what it runs, and what the gate expects of it.

    `expects(model, layers)` gives the fused ops it leaves and how many, for an encoder of `layers`
    layers. A `skippable` fusion may be switched off by name; the gate then stops expecting the ops in
    `makes` (its own, and those of later passes that need its output) and stops counting the
    leftovers in `consumes`. The other passes keep the graph valid and later fusions possible."""

    name: str
    run: Run
    expects: Callable[[ir.Model, int], dict[str, int]] | None = None
    skippable: bool = False
    makes: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    opt_in: bool = False  # runs only when named in OptimizeOptions.include


def _quiet(step: Callable[[ir.Model], None]) -> Run:
    """A pass that keeps the graph well-formed and has nothing to report."""

    def run(model: ir.Model, options: OptimizeOptions) -> PassResult:
        step(model)
        return PassResult()

    return run


PASSES: list[Pass] = [
    Pass("upgrade", _quiet(upgrade)),
    Pass(
        "layer_norm", lambda model, options: fuse_decomposed_layer_norm(model, options.debug),
        skippable=True, makes=("EmbedLayerNormalization", "SkipLayerNormalization"),
        consumes=("ReduceMean", "LayerNormalization"),
    ),
    Pass("canonicalize", _quiet(canonicalize)),
    Pass(
        "embed_layer_norm", lambda model, options: fuse_embed_layer_norm(model),
        expects=lambda model, layers: {"EmbedLayerNormalization": 1},
        skippable=True, makes=("EmbedLayerNormalization", "SkipLayerNormalization"), consumes=("LayerNormalization",),
    ),
    # The residual Add after an unfused attention block is not the skip rule's pattern.
    Pass(
        "attention", lambda model, options: fuse_attention(model, options.num_heads),
        expects=lambda model, layers: {"Attention": layers},
        skippable=True, makes=("Attention", "SkipLayerNormalization"), consumes=("Softmax", "LayerNormalization"),
    ),
    Pass("retype", _quiet(retype)),
    Pass(
        "skip_layer_norm", lambda model, options: fuse_skip_layer_norm(model, options.debug),
        expects=lambda model, layers: {"SkipLayerNormalization": 2 * layers},
        skippable=True, makes=("SkipLayerNormalization",), consumes=("LayerNormalization",),
    ),
    Pass(
        "gelu", lambda model, options: fuse_gelu(model, options.debug),
        expects=lambda model, layers: {op: layers for op in gelu_counts(model)},  # BiasGelu, or FastGelu (tanh)
        skippable=True, makes=("BiasGelu", "FastGelu"), consumes=("Erf",),
    ),
    Pass("first_token", lambda model, options: run_tail_on_first_token(model), skippable=True),
    Pass("mask_index", lambda model, options: PassResult(use_sequence_lengths(model)), opt_in=True),
    Pass("retype_final", _quiet(retype)),
]  # fmt: skip
SKIPPABLE = tuple(p.name for p in PASSES if p.skippable)
OPT_IN = tuple(p.name for p in PASSES if p.opt_in)


def run_pass(model: ir.Model, name: str, options: OptimizeOptions | None = None) -> PassResult:
    """One pass of PASSES on its own, by name (the build chain's mask_index variant)."""
    step = next((p for p in PASSES if p.name == name), None)
    if step is None:
        raise InputError(f"{name}: expected a pass name, one of {[p.name for p in PASSES]}")
    return step.run(model, options or OptimizeOptions())


def check_skip(skip: frozenset[str], include: frozenset[str] = frozenset()) -> None:
    names = [p.name for p in PASSES]
    for name in sorted(include):
        if name not in OPT_IN:
            raise InputError(f"--with {name}: expected an opt-in pass, one of {list(OPT_IN)}")
    for name in sorted(skip):
        if name not in names:
            raise InputError(f"--skip {name}: expected a pass name, one of {sorted(SKIPPABLE)}")
        if name not in SKIPPABLE:
            raise InputError(
                f"--skip {name}: this pass keeps the graph valid for the fusions after it and always runs; "
                f"passes that can be skipped: {sorted(SKIPPABLE)}"
            )


def optimize_model(model: ir.Model, options: OptimizeOptions | None = None) -> tuple[ir.Model, FusionReport]:
    """Fuse `model` in place; returns it with the report. Raises FusionError on a shortfall."""
    options = options or OptimizeOptions()
    check_skip(options.skip, options.include)
    seconds: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}
    layers = options.num_layers
    for step in PASSES:
        if step.name == "embed_layer_norm" and layers is None:
            layers = count_ops(model).get("Softmax", 0)  # one attention softmax per encoder layer
        if step.name in options.skip or (step.opt_in and step.name not in options.include):
            continue
        started = time.perf_counter()
        result = step.run(model, options)
        seconds[step.name] = round(time.perf_counter() - started, 3)
        if result.refused:
            reasons[step.name] = list(result.refused)
    layers = layers or 0

    ops = count_ops(model)
    gelu = gelu_counts(model)  # BiasGelu, or FastGelu for a tanh-GELU model
    skipped = [step for step in PASSES if step.name in options.skip]
    unchecked_ops = {op for step in skipped for op in step.makes}
    unchecked_leftovers = {op for step in skipped for op in step.consumes}
    expected = {op: n for step in PASSES if step.expects for op, n in step.expects(model, layers).items()}
    report = FusionReport(
        counts={op: ops.get(op, 0) for op in options.family.fused_ops} | gelu,
        expected={op: n for op, n in expected.items() if op not in unchecked_ops},
        leftovers={op: ops.get(op, 0) for op in LEFTOVER_OPS if op not in unchecked_leftovers},
        reasons=reasons,
        seconds=seconds,
        skipped=sorted(options.skip),
    )
    if options.gate and (layers == 0 or report.shortfalls()):
        hint = "" if options.debug else "\n(`bert14 optimize --debug` adds every pass's refusals, onnxscript's too)"
        detail = report.explain()
        if layers == 0:
            detail = "the graph has no Softmax: it does not look like a BERT encoder\n" + detail
        raise FusionError(f"fusion fell short of a BERT encoder with {layers} layers:\n{detail}{hint}")
    return model, report


def optimize_file(source: Path, target: Path, options: OptimizeOptions | None = None) -> FusionReport:
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise InputError(f"{source}: expected an ONNX model file, found none")
    if target.exists() and target.resolve() == source.resolve():
        raise InputError(f"{target}: expected an output path other than the input model (it would be overwritten)")
    try:
        model = ir.load(str(source))
    except Exception as exc:  # protobuf's DecodeError, onnx_ir's ValueError: all mean "not a model"
        raise InputError(f"{source}: expected an ONNX model file, could not parse it ({type(exc).__name__})") from exc
    model, report = optimize_model(model, options)
    save(model, target)
    return report


def save(model: ir.Model, target: Path) -> None:
    """Write the model without value_info entries for initializers: tools that rewrite weights
    (quantize_dynamic turns Gemm into MatMul with a transposed weight) re-run ONNX's shape
    inference, which then fails on the stale entry."""
    target = Path(target)
    proto = ir.to_proto(model)
    initializers = {tensor.name for tensor in proto.graph.initializer}
    kept = [info for info in proto.graph.value_info if info.name not in initializers]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept)
    # Written beside the target and renamed over it, so a failed write never leaves half a model.
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        onnx.save(proto, str(partial))
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"{target}: cannot write the model there ({exc.strerror or exc})") from exc
