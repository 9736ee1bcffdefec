"""OpenVINO static INT8 (model.int8.ov.xml + .bin): the fused graph, quantized by NNCF on calibration text.

    model.opt.onnx ──ov.convert_model──> ov.Model ──nncf.quantize(calibration feeds)──> INT8 IR
                                                  └─nncf.quantize_with_accuracy_control (with eval texts)

Why the fused graph and not model.onnx: OpenVINO's ONNX frontend reads the com.microsoft ops
(Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization); OpenVINO turns the fused
Attention into one softmax-attention kernel per layer where the plain graph keeps torch's NaN
guard (IsNaN + Select) and separate transposes, and the first_token tail (optimize/first_token.py)
carries over, so the last layer's dense work runs on one token. With NNCF's generic recipe on each
(one run, 30 interleaved rounds, 2026-11-27), the plain graph plus first_token alone ran 0.94-0.98x
the plain graph's time and the fused one 0.78-0.90x at 1 x 128 / 1 x 512 / 8 x 128; this file's
recipe against OpenVINO's stock one on the plain graph: docs/numbers.md (`benchmarks/openvino_int8.py`).

The recipe is NNCF's transformer one (model_type TRANSFORMER: quantizers on the inputs of the
MatMuls only, asymmetric where the values are, as after GELU, and SmoothQuant moving each
activation channel's range into the weights of the MatMul it feeds, alpha 0.95). Measured on the
trained fixture, against ONNX Runtime fp32 for the first two columns (max |dlogit| on the
validation suite / on the 1,000 test titles) and against PyTorch for the agreements (test titles;
600 texts of other genres, benchmarks/data.py):
    NNCF's generic default         12.7 / 7.6    it also quantizes element-wise values, among them
                                                 the attention-mask bias of OpenVINO's Attention
                                                 decomposition, whose calibrated range is [0, 0] on
                                                 unpadded rows (padded positions were unmasked), and
                                                 the QK^T scores before the mask, in steps of 0.7
    transformer, no SmoothQuant    0.43 / 0.27
    transformer, this one          0.17 / 0.13   titles 100%, other genres 99.67%
    transformer, symmetric only    0.15 / 0.09   titles 99.9%, other genres 99.17%, 1-3% faster
    SmoothQuant alpha 0.5 to 1.0   0.14 to 0.29  (symmetric) 0.95 was best
Every flip above is a near-tie of the fp32 model (top-two logit gap at most 0.1).

Activation scales are fixed at build time (symmetric int8 activations, per-channel int8 weights,
min-max ranges over the calibration set, fast bias correction), so nothing is quantized per call,
unlike ONNX Runtime's dynamic INT8.

Calibration: the caller's texts, one feed per text (batch 1, its own length, as served), or, when
there are none, a seeded sample of random token sequences of spread lengths. A trained model
should be calibrated on its own kind of text (`bert14 export --calibration FILE`).

Accuracy control (`accuracy` set): NNCF's quantize_with_accuracy_control measures top-1 agreement
with the reference logits (PyTorch's, from the caller) on evaluation batches and puts the
quantizers that cost most agreement back to floating point until the drop is within
1 - target_agreement.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from bert14.check.cases import make_case
from bert14.check.compare import agreement
from bert14.errors import QuantizeError
from bert14.head import SOFTMAX
from bert14.quantize.dynamic import QuantizeResult
from bert14.quantize.isa import WeightFormat, choose_weight_format
from bert14.runtime.engines.openvino import PRECISION_HINT

INSTALL_HINT = "pip install -r requirements/export.txt (it has openvino and nncf)"
CALIBRATION_SEED = 77  # apart from the validation suites' seeds (check/cases.py): calibration is not what is checked
SEEDED_SAMPLES = 128
SEEDED_MAX_LENGTH = 256  # seeded sequences span 2..this many tokens, log-uniformly


@dataclass(frozen=True)
class OpenVinoOptions:
    subset_size: int = 300  # calibration feeds NNCF reads at most (NNCF's default)
    smooth_quant: bool = True  # NNCF's SmoothQuant (alpha 0.95): activation ranges moved into the weights
    overflow_fix: bool | None = None  # 7-bit weights in every layer; None: from the CPU (quantize/isa.py)


@dataclass(frozen=True)
class AccuracyTarget:
    """What accuracy control holds the INT8 model to, measured on evaluation batches."""

    feeds: list[dict[str, np.ndarray]]
    reference: list[np.ndarray]  # per batch: (B, C) reference logits (PyTorch's)
    target_agreement: float = 0.995
    score_function: str = SOFTMAX


def require_nncf() -> None:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        raise QuantizeError(
            f"the OpenVINO INT8 build needs openvino and nncf ({exc.name} is missing): {INSTALL_HINT}, "
            "or export without it (--no-openvino)"
        ) from exc


def seeded_calibration(vocab_size: int, type_vocab_size: int, max_positions: int) -> list[dict[str, np.ndarray]]:
    """SEEDED_SAMPLES feeds of batch 1 with random ids, lengths spread log-uniformly over 2..256."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    top = min(SEEDED_MAX_LENGTH, max_positions)
    lengths = np.exp(rng.uniform(np.log(2), np.log(top), size=SEEDED_SAMPLES)).astype(int)
    return [make_case(rng, 1, int(n), vocab_size, type_vocab_size).feeds() for n in lengths]


def text_calibration(tokenizer, texts: list[str], max_length: int) -> list[dict[str, np.ndarray]]:
    """One feed per text (batch 1, its own length, cut to the model's positions)."""
    from bert14.encode import buckets, encode

    encoded = encode(tokenizer, texts, None, max_length)
    return [batch.feeds() for batch in buckets(encoded, max_batch=1, max_tokens=max_length)]


def quantize_openvino(
    source: Path,
    target: Path,
    calibration: list[dict[str, np.ndarray]],
    options: OpenVinoOptions,
    accuracy: AccuracyTarget | None = None,
    calibration_origin: str = "",
    cpu_flags: dict[str, bool] | None = None,
) -> QuantizeResult:
    """Quantize the ONNX file `source` into the OpenVINO IR `target` (.xml, with its .bin beside it).
    `cpu_flags` (bert14.artifact.cpu_flags()) decide the overflow fix when options leave it open."""
    require_nncf()
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    if not calibration:
        raise QuantizeError("OpenVINO INT8: expected at least one calibration feed, got none")
    logging.getLogger("nncf").setLevel(logging.WARNING)  # NNCF logs every step at INFO
    model = ov.convert_model(str(source))
    # Feeds are made with every input a family may take; the model takes its family's (bert14/family.py).
    names = [port.get_any_name() for port in model.inputs]
    calibration = [{name: feed[name] for name in names} for feed in calibration]
    if accuracy is not None:
        accuracy = replace(accuracy, feeds=[{name: feed[name] for name in names} for feed in accuracy.feeds])
    settings: dict[str, object] = {
        "subset_size": min(options.subset_size, len(calibration)),
        "model_type": nncf.ModelType.TRANSFORMER,
    }
    fix = overflow_fix(options, cpu_flags or {})
    advanced: dict[str, object] = {"overflow_fix": OverflowFix.ENABLE if fix.reduce_range else OverflowFix.FIRST_LAYER}
    if not options.smooth_quant:
        advanced["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(matmul=-1)  # a negative alpha: no smoothing
    settings["advanced_parameters"] = AdvancedQuantizationParameters(**advanced)
    dataset = nncf.Dataset(calibration)
    # NNCF draws progress bars on standard output; the export reports its own stages.
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = _quantize(nncf, model, dataset, settings, accuracy)
    _canonical_names(quantized)
    ov.save_model(quantized, str(target), compress_to_fp16=False)  # fp16 weights: slower, less exact
    quantizers = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    if quantizers == 0:
        raise QuantizeError(f"{source}: NNCF placed no quantizer; the model would run in floating point")
    recipe: dict[str, object] = {
        "engine": "openvino",
        "tool": "nncf.quantize_with_accuracy_control" if accuracy else "nncf.quantize",
        "source": Path(source).name,
        "model_type": "transformer",
        "activations": "int8, static (fixed scales), NNCF's mixed preset (asymmetric where a range is one-sided)",
        "weights": "int8, per channel" + (", 7-bit in every layer" if fix.reduce_range else ", 7-bit in the first"),
        "overflow_fix": {"every_layer": fix.reduce_range, "why": fix.reason},
        "calibration": {"feeds": len(calibration), "used": settings["subset_size"], "from": calibration_origin},
        "smooth_quant": options.smooth_quant,
        "fast_bias_correction": True,
        "quantizers": quantizers,
        "inference_precision": PRECISION_HINT,
        "versions": {name: _version(name) for name in ("openvino", "nncf")},
    }
    if accuracy is not None:
        recipe["accuracy_control"] = {
            "target_agreement": accuracy.target_agreement,
            "eval_batches": len(accuracy.feeds),
        }
    return QuantizeResult(recipe, kept_fp32=[])


def overflow_fix(options: OpenVinoOptions, cpu_flags: dict[str, bool]) -> WeightFormat:
    """Whether every layer gets 7-bit weights (NNCF's OverflowFix.ENABLE) or only the first (its default).

    The same saturation as ONNX Runtime's (isa.py): oneDNN's int8 kernels on AVX2 without VNNI add u8 x s8
    pairs in 16 bits. Trained fixture calibrated on 300 titles, on a 2-core AVX2-only EPYC, against ONNX
    Runtime fp32 (mean / max |dlogit|, 300 test titles; 200 texts of other genres): the first layer only
    0.133 / 0.31 (the export gate's 0.25 missed), 0.192 / 0.63; every layer 0.041 / 0.15, 0.079 / 0.48.
    On VNNI CPUs the pair sums are 32-bit and NNCF's default stays."""
    if options.overflow_fix is not None:
        return WeightFormat(options.overflow_fix, "set by the caller")
    return choose_weight_format(cpu_flags)


def _quantize(nncf, model, dataset, settings: dict[str, object], accuracy: AccuracyTarget | None):
    if accuracy is None:
        return nncf.quantize(model, dataset, **settings)
    items = list(zip(accuracy.feeds, accuracy.reference, strict=True))
    # Accuracy control takes the same advanced parameters under another keyword.
    settings = dict(settings)
    if "advanced_parameters" in settings:
        settings["advanced_quantization_parameters"] = settings.pop("advanced_parameters")

    def validate(compiled: object, data: object) -> float:
        rows = list(data)  # type: ignore[call-overload]
        got = [compiled(feeds)[0] for feeds, _ in rows]  # type: ignore[operator]  # (B, C) each
        want = [reference for _, reference in rows]
        return agreement(np.concatenate(want), np.concatenate(got), accuracy.score_function).agreement

    return nncf.quantize_with_accuracy_control(
        model,
        dataset,
        nncf.Dataset(items),
        validation_fn=validate,
        max_drop=round(1.0 - accuracy.target_agreement, 6),
        drop_type=nncf.DropType.ABSOLUTE,
        **settings,
    )


_GENERATED = re.compile(r"(?:(?<=^)|(?<=/))([A-Z][A-Za-z]*)_(\d+)(?=/|$)")


def _canonical_names(model) -> None:
    """Renumber OpenVINO's generated node names ("Constant_58772", from a process-wide counter,
    and NNCF's names made from them, "Gather_71729/fq_weights_0") in graph order, so that the
    same export gives the same file whatever ran before it in the process."""
    numbers: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        return numbers.setdefault(match.group(0), f"{match.group(1)}_{len(numbers)}")

    for op in model.get_ordered_ops():
        op.set_friendly_name(_GENERATED.sub(renumber, op.get_friendly_name()))


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
