"""`bert14 export`: source model -> artifact directory, validated against PyTorch, published whole.

The artifact is built in a hidden staging directory inside OUT and published only after every file
is written and every check passed, so a failure leaves OUT as it was (bert14/publish.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import bert14
from bert14 import progress
from bert14.artifact import (
    CONFIG_FILE,
    FP16_FILE,
    FP16_SEQLEN_FILE,
    FUSED_FILE,
    INT8_FILE,
    MODEL_FILE,
    OPENVINO_INT8_FILE,
    OPENVINO_INT8_WEIGHTS,
    ArtifactEntry,
    Manifest,
    cpu_flags,
    package_versions,
    write_manifest,
)
from bert14.check.cases import Case, validation_suite
from bert14.check.compare import THRESHOLDS, CaseResult, format_table, require_pass, summarize
from bert14.check.invariance import check_invariance, rows_of
from bert14.check.reference import TorchReference, torch_logits, validate_onnx
from bert14.check.runners import runner_for
from bert14.errors import InputError, ParityError
from bert14.export.model import DEFAULT_SEED, SourceModel, build_default, load_checkpoint
from bert14.export.onnx_export import ExportSettings, export_onnx
from bert14.publish import staging
from bert14.quantize.dynamic import DynamicOptions
from bert14.quantize.fallback import FallbackOptions
from bert14.quantize.openvino import OpenVinoOptions
from bert14.quantize.static import StaticOptions
from bert14.tokenizer import write_tokenizer_files

DEFAULT_OUT = Path("artifacts/bert14")
FP16_CPU_MAX_TOKENS = 512  # batch x sequence of the fp16 cases checked on the CPU provider
DISTILBERT_LAYER_NORM_EPS = 1e-12  # DistilBERT's config has no layer_norm_eps; its LayerNorms use this
TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnx-ir",
    "tokenizers",
    "numpy",
    "openvino",
    "nncf",
)


OPENVINO_SKIPPED = (
    f"{OPENVINO_INT8_FILE} not built: OpenVINO's static INT8 needs calibration texts like the model's own, and "
    "random tokens miss its gate on a trained checkpoint; re-run with --calibration FILE (one text a line, "
    "a few hundred of your texts) to build it"
)


@dataclass
class ExportOptions:
    model_dir: Path | None = None  # None: the default BERT-14 with seeded weights
    out_dir: Path = DEFAULT_OUT
    exporter: str = "dynamo"
    attn: str = "sdpa"
    opset: int = 18
    seed: int = DEFAULT_SEED
    optimize: bool = True  # also write model.opt.onnx (fused fp32), model.fp16.onnx and model.int8.onnx
    quantize: bool = True  # write model.int8.onnx (needs optimize)
    fp16_seqlen: bool = True  # also write model.fp16.seqlen.onnx, the CUDA runtime's fast path
    int8: DynamicOptions = field(default_factory=DynamicOptions)
    int8_fallback: FallbackOptions | None = None  # accuracy-driven fp32 fallback, needs eval texts
    int8_eval_texts: Path | None = None  # UTF-8, one text a line
    int8_static: StaticOptions | None = None  # static QDQ instead of dynamic; needs calibration texts
    int8_calibration_texts: Path | None = None  # UTF-8, one text a line
    openvino: bool = True  # with quantize, also write model.int8.ov.xml/.bin: OpenVINO static INT8
    openvino_int8: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    calibration_texts: Path | None = None  # OpenVINO INT8's calibration, one text a line; None: a seeded sample
    shape_overrides: dict[str, Any] = field(default_factory=dict)  # default model only (tests use tiny shapes)

    def __post_init__(self) -> None:
        """The rules between options, for the API and the CLI alike."""
        if self.int8_static is not None and self.int8_fallback is not None:
            raise InputError("int8: the accuracy-driven fallback works with dynamic INT8 only, not with static")
        if self.int8_static is not None and self.int8_calibration_texts is None:
            raise InputError("int8: static INT8 needs calibration texts (--int8-calibration FILE, one text a line)")
        if self.int8_fallback is not None and self.int8_eval_texts is None:
            raise InputError(
                "int8: the accuracy-driven fallback needs evaluation texts to measure on (--int8-eval-texts FILE)"
            )
        builds_openvino = self.openvino and self.optimize and self.quantize
        if self.calibration_texts is not None and not builds_openvino:
            raise InputError(
                "--calibration: the calibration texts are for the OpenVINO INT8 build, which this export skips "
                "(--no-openvino, --no-int8 or --no-optimize)"
            )
        if self.calibration_texts is not None:
            _read_texts(self.calibration_texts, "--calibration")  # readable, UTF-8, not empty: before the work
        if builds_openvino:
            from bert14.quantize.openvino import require_nncf

            require_nncf()  # before minutes of export, not after
        if self.model_dir is not None and self.shape_overrides:
            raise InputError("shape overrides apply to the default model only, not to a checkpoint")


@dataclass
class ExportReport:
    out_dir: Path
    manifest: Manifest
    validation: dict[str, list[CaseResult]]  # artifact file -> its cases
    tolerances: dict[str, float]
    seconds: float

    def tables(self) -> str:
        parts = []
        for name, results in self.validation.items():
            parts.append(f"{name} vs PyTorch ({len(results)} cases):")
            parts.append(format_table(results, self.tolerances[name]))
        return "\n".join(parts)


@dataclass
class _Checks:
    """Every artifact's check against PyTorch: the gate, and what the report and manifest keep."""

    reference: TorchReference
    max_positions: int
    validation: dict[str, list[CaseResult]] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, ArtifactEntry] = field(default_factory=dict)
    invariance: dict[str, dict[str, object]] = field(default_factory=dict)  # file -> check/invariance.py's report

    def gate(self, key: str, path: Path, cases: list[Case], what: str, invariant: bool = True) -> dict[str, Any]:
        """Parity with PyTorch on `cases` under the comparator's threshold for artifact `key` on the CPU
        (check/compare.py THRESHOLDS, as `bert14 check` applies it), then each row alone against batched as
        served (check/invariance.py): a label flip fails the export unless `invariant` is False (a recipe the
        caller chose knowing its scores depend on the batch), where the figures are still recorded.
        Returns the validation summary the manifest keeps."""
        threshold = THRESHOLDS["cpu"][key]
        atol = threshold.logit_atol
        progress.stage(f"checking {path.name} against PyTorch ({len(cases)} cases)")
        results = validate_onnx(self.reference, path, cases, atol, not threshold.near_ties_allowed)
        require_pass(results, atol, what)
        self.validation[path.name], self.tolerances[path.name] = results, atol
        rows = rows_of([case for case in cases if not case.name.endswith("-left")])
        progress.stage(f"checking {path.name} alone against batched ({len(rows)} rows)")
        report = check_invariance(runner_for(path, optimized=True), rows, self.reference.function, self.max_positions)
        self.invariance[path.name] = report.to_dict()
        if invariant and not report.passed:
            raise ParityError(
                f"{what}: {report.flips} of {report.comparisons} rows changed label between alone and batched "
                f"(max |dprob| {report.max_abs_prob_diff:.3g}); a text's answer must not depend on its batch"
            )
        return summarize(results, atol)


def load_source(options: ExportOptions) -> SourceModel:
    if options.model_dir is not None:
        return load_checkpoint(options.model_dir, options.attn)
    return build_default(options.seed, options.attn, **options.shape_overrides)


def export_artifact(options: ExportOptions) -> ExportReport:
    started = time.perf_counter()
    settings = ExportSettings(options.exporter, options.opset)
    settings.check()
    extra: dict[str, Any] = {}
    # OUT is checked (and its stage created, so a read-only OUT fails) before minutes of work.
    with staging(options.out_dir) as stage:
        progress.stage("loading the source model")
        source = load_source(options)
        config = source.config
        checks = _Checks(TorchReference(source.model), source.max_tokens)
        progress.stage(f"exporting {MODEL_FILE} ({options.exporter} exporter)")
        export_info = export_onnx(source.model, stage / MODEL_FILE, settings, source.max_tokens)
        config.to_json_file(str(stage / CONFIG_FILE))
        _write_tokenizer(stage, source)
        suite = validation_suite(config.vocab_size, source.shape["type_vocab_size"], source.max_tokens)
        validation = checks.gate("fp32", stage / MODEL_FILE, suite, f"{MODEL_FILE} ({options.exporter} export)")
        checks.artifacts["fp32"] = ArtifactEntry(MODEL_FILE, validation=validation)
        if options.optimize:
            extra = _fused_variants(source, stage, suite, checks, options)
        for entry in checks.artifacts.values():
            entry.batch_invariance = checks.invariance[entry.file]
        progress.stage(f"publishing into {options.out_dir}")
        manifest = write_manifest(stage, _manifest(source, options, export_info, checks.artifacts) | extra)
    return ExportReport(options.out_dir, manifest, checks.validation, checks.tolerances, time.perf_counter() - started)


def _write_tokenizer(stage: Path, source: SourceModel) -> None:
    """The tokenizer's files: a tokenizer.json family's as the checkpoint has them (the runtime read them
    at load), WordPiece's written from the vocabulary and settings (vocab.txt, tokenizer.json, config)."""
    if source.tokenizer_files:
        for name, data in source.tokenizer_files.items():
            (stage / name).write_bytes(data)
    else:
        write_tokenizer_files(stage, source.vocab, source.tokenizer_settings)


def _fused_variants(
    source: SourceModel, stage: Path, suite: list[Case], checks: _Checks, options: ExportOptions
) -> dict[str, Any]:
    """model.opt.onnx (fp32 tolerance), model.fp16.onnx and model.int8.onnx (their own tolerances)."""
    from bert14.optimize.fp16 import convert_fp16
    from bert14.optimize.pipeline import OptimizeOptions, optimize_file
    from bert14.quantize.dynamic import quantize_dynamic_int8

    config = source.config
    progress.stage(f"fusing {FUSED_FILE}")
    fusion = optimize_file(
        stage / MODEL_FILE,
        stage / FUSED_FILE,
        OptimizeOptions(
            num_layers=source.shape["num_hidden_layers"],
            num_heads=source.shape["num_attention_heads"],
            family=source.family,
        ),
    )
    padded = suite + validation_suite(
        config.vocab_size, source.shape["type_vocab_size"], source.max_tokens, left_pad=True
    )
    validation = checks.gate("fp32_fused", stage / FUSED_FILE, padded, f"{FUSED_FILE} (fused)")
    checks.artifacts["fp32_fused"] = ArtifactEntry(FUSED_FILE, validation=validation)

    progress.stage(f"converting {FP16_FILE}")
    convert_fp16(stage / FUSED_FILE, stage / FP16_FILE)
    # The CPU provider has few fp16 kernels (it casts around most ops), so the large cases would
    # take minutes for a check that only has to show the file loads and agrees; CUDA runs them all
    # in `make gpu-check`.
    small = [case for case in padded if case.input_ids.size <= FP16_CPU_MAX_TOKENS]
    what = f"{FP16_FILE} (fp16, checked on the CPU provider)"
    validation = checks.gate("fp16", stage / FP16_FILE, small, what)
    checks.artifacts["fp16"] = ArtifactEntry(FP16_FILE, provider="cuda", validation_cpu=validation)
    if options.fp16_seqlen:
        _fp16_seqlen(stage, [case for case in small if case.name.endswith("-right")], checks)
    extra = {"fusions": fusion.to_manifest()}
    if not options.quantize:
        return extra

    fallback = None
    progress.stage(f"quantizing {INT8_FILE}")
    if options.int8_static is not None:
        quantized = _int8_static(stage, source, options)
    elif options.int8_fallback is not None:
        quantized, fallback = _int8_with_fallback(source, stage, options)
    else:
        quantized = quantize_dynamic_int8(stage / FUSED_FILE, stage / INT8_FILE, options.int8, cpu_flags())
    # per_tensor scales span the batch: asked for by name, so its flips are recorded, not refused
    invariant = options.int8_static is not None or options.int8.activations != "per_tensor"
    what = f"{INT8_FILE} (int8)"
    validation = checks.gate("int8", stage / INT8_FILE, padded, what, invariant=invariant)
    fp32_size = (stage / MODEL_FILE).stat().st_size
    int8_size = (stage / INT8_FILE).stat().st_size
    checks.artifacts["int8"] = ArtifactEntry(
        INT8_FILE,
        provider="cpu",
        recipe=quantized.recipe,
        kept_fp32=quantized.kept_fp32,
        size_bytes=int8_size,
        size_vs_fp32=round(int8_size / fp32_size, 4),
        validation=validation,
        fallback=None if fallback is None else fallback.to_manifest(),
    )
    if options.openvino and options.model_dir is not None and options.calibration_texts is None:
        # Random tokens calibrate a trained model's activations badly (its gate fails on most real
        # checkpoints: max |dlogit| 0.3-0.7 against 0.25), and no text of the user's is at hand.
        progress.stage(f"skipping {OPENVINO_INT8_FILE} (no --calibration texts for a checkpoint)")
        extra["skipped"] = {"int8_openvino": OPENVINO_SKIPPED}
    elif options.openvino:
        _openvino_int8(source, stage, padded, checks, options)
    return extra


def _openvino_int8(
    source: SourceModel, stage: Path, padded: list[Case], checks: _Checks, options: ExportOptions
) -> None:
    """model.int8.ov.xml/.bin: NNCF static INT8 of the fused graph, gated like model.int8.onnx."""
    from bert14.quantize.openvino import AccuracyTarget, quantize_openvino, seeded_calibration, text_calibration
    from bert14.tokenizer import load_tokenizer

    config = source.config
    progress.stage(f"quantizing {OPENVINO_INT8_FILE} (OpenVINO, NNCF)")
    if options.calibration_texts is not None:
        tokenizer, _ = load_tokenizer(stage, source.family)
        texts = _read_texts(options.calibration_texts, "calibration texts")
        calibration = text_calibration(tokenizer, texts, source.max_tokens)
        origin = f"{len(texts)} texts from {Path(options.calibration_texts).name}"
    else:
        calibration = seeded_calibration(config.vocab_size, source.shape["type_vocab_size"], source.max_tokens)
        origin = "seeded random token sequences (no --calibration texts)"
    accuracy = None
    if options.int8_fallback is not None:
        feeds, reference = _eval_batches(source, stage, options)
        target = options.int8_fallback.target_agreement
        accuracy = AccuracyTarget(feeds, reference, target, source.score_function)
    quantized = quantize_openvino(
        stage / FUSED_FILE,
        stage / OPENVINO_INT8_FILE,
        calibration,
        options.openvino_int8,
        accuracy,
        origin,
        cpu_flags(),
    )
    what = f"{OPENVINO_INT8_FILE} (OpenVINO int8)"
    validation = checks.gate("int8_openvino", stage / OPENVINO_INT8_FILE, padded, what)
    size = (stage / OPENVINO_INT8_FILE).stat().st_size + (stage / OPENVINO_INT8_WEIGHTS).stat().st_size
    checks.artifacts["int8_openvino"] = ArtifactEntry(
        OPENVINO_INT8_FILE,
        weights=OPENVINO_INT8_WEIGHTS,
        engine="openvino",
        provider="cpu",
        recipe=quantized.recipe,
        size_bytes=size,
        size_vs_fp32=round(size / (stage / MODEL_FILE).stat().st_size, 4),
        validation=validation,
    )


def _fp16_seqlen(stage: Path, right_padded: list[Case], checks: _Checks) -> None:
    """model.fp16.seqlen.onnx: Attention reads sequence lengths (optimize/mask_index.py), which
    lets ONNX Runtime's CUDA provider use its fused attention kernels; valid for right padding
    only, which is what bert14's runtime always feeds it."""
    from bert14.optimize.mask_index import write_seqlen_fp16

    progress.stage(f"writing {FP16_SEQLEN_FILE}")
    write_seqlen_fp16(stage / FUSED_FILE, stage / FP16_SEQLEN_FILE)
    what = f"{FP16_SEQLEN_FILE} (fp16, sequence-length mask, right padding, on the CPU provider)"
    validation = checks.gate("fp16_seqlen", stage / FP16_SEQLEN_FILE, right_padded, what)
    checks.artifacts["fp16_seqlen"] = ArtifactEntry(
        FP16_SEQLEN_FILE,
        provider="cuda",
        mask="sequence lengths: right padding only (bert14.runtime always pads on the right)",
        validation_cpu=validation,
    )


TEXTS_FILE_MAX_BYTES = 64 << 20  # calibration and eval files: thousands of texts at most, never a corpus


def _read_texts(path: Path | None, what: str) -> list[str]:
    """The non-blank lines of a calibration or evaluation file, checked: UTF-8 text, no NUL bytes, at most
    TEXTS_FILE_MAX_BYTES (a 121 MB line once took an export past 12 GB)."""
    if path is None or not Path(path).is_file():
        raise InputError(f"{what}: expected a UTF-8 file, one text a line, found {path}")
    size = Path(path).stat().st_size
    if size > TEXTS_FILE_MAX_BYTES:
        raise InputError(
            f"{path}: {size / (1 << 20):.0f} MB; expected at most {TEXTS_FILE_MAX_BYTES >> 20} MB of texts (a few "
            "hundred to a few thousand lines like the model's inputs); take a sample, e.g. `shuf -n 1000 FILE`"
        )
    raw = Path(path).read_bytes()
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise InputError(f"{path}: expected text, found a NUL byte on line {line} (a binary file?)")
    try:
        texts = [line for line in raw.decode("utf-8").split("\n") if line.strip()]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: expected UTF-8 text ({exc.reason})") from exc
    if not texts:
        raise InputError(f"{path}: expected at least one text")
    return texts


def _int8_static(stage: Path, source: SourceModel, options: ExportOptions):
    from bert14.quantize.static import calibration_batches, quantize_static_qdq
    from bert14.tokenizer import load_tokenizer

    texts = _read_texts(options.int8_calibration_texts, "int8 calibration texts")
    tokenizer, _ = load_tokenizer(stage, source.family)
    batches = calibration_batches(tokenizer, texts, source.max_tokens)
    assert options.int8_static is not None
    return quantize_static_qdq(stage / FUSED_FILE, stage / INT8_FILE, batches, options.int8_static, cpu_flags())


def _eval_batches(source: SourceModel, stage: Path, options: ExportOptions):
    """The eval texts as feeds of length-bucketed batches, and PyTorch's logits for each (B, C)."""
    from bert14.encode import buckets, encode
    from bert14.tokenizer import load_tokenizer

    texts = _read_texts(options.int8_eval_texts, "int8 eval texts")
    tokenizer, _ = load_tokenizer(stage, source.family)
    encoded = encode(tokenizer, texts, None, source.max_tokens)
    batches = buckets(encoded, max_batch=32, max_tokens=8192)
    cases = [Case(f"eval-{i}", b.input_ids, b.attention_mask, b.token_type_ids) for i, b in enumerate(batches)]
    return [case.feeds() for case in cases], [torch_logits(source.model, case) for case in cases]


def _int8_with_fallback(source: SourceModel, stage: Path, options: ExportOptions):
    """INT8 with the accuracy-driven fallback, measured against PyTorch on the eval texts."""
    import numpy as np

    from bert14.quantize.fallback import accuracy_fallback

    # Rows are compared batch by batch, in the same order on both sides.
    feeds, per_batch = _eval_batches(source, stage, options)
    reference = np.concatenate(per_batch)  # (N, C)
    assert options.int8_fallback is not None
    fallback = replace(options.int8_fallback, score_function=source.score_function)
    return accuracy_fallback(
        stage / FUSED_FILE, stage / INT8_FILE, feeds, reference, options.int8, cpu_flags(), fallback
    )


def _manifest(
    source: SourceModel, options: ExportOptions, export_info: dict[str, Any], artifacts: dict[str, ArtifactEntry]
) -> dict[str, Any]:
    config = source.config
    return {
        "bert14_version": bert14.__version__,
        "created_unix": int(time.time()),
        "source": {**source.origin, "attn_implementation": options.attn},
        "model": {
            "model_type": source.family.model_type,
            "architecture": source.family.architecture,
            **source.shape,  # BERT's key names (DistilBERT's dim is hidden_size, ...)
            "max_tokens": source.max_tokens,
            "layer_norm_eps": getattr(config, "layer_norm_eps", DISTILBERT_LAYER_NORM_EPS),
            "labels": source.labels,
            "problem_type": config.problem_type,
            "score_function": source.score_function,
        },
        "export": export_info,
        "artifacts": {key: entry.to_manifest() for key, entry in artifacts.items()},
        "versions": package_versions(TRACKED_PACKAGES),
        "cpu_flags": cpu_flags(),
    }
