from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from bert14.errors import QuantizeError
from bert14.quantize.dynamic import DynamicOptions, quantize_dynamic_int8
from bert14.quantize.fallback import FallbackOptions, accuracy_fallback, score
from bert14.quantize.isa import choose_weight_format
from bert14.quantize.layers import layer_map

VNNI = {"avx2": True, "avx512_vnni": True}


def _ops(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_default_int8_is_per_token_integer_products_and_keeps_the_head(tiny_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    result = quantize_dynamic_int8(tiny_artifact / "model.opt.onnx", out, DynamicOptions(), VNNI)
    ops = _ops(out)
    # per layer: Q, K, V, the attention output and the two FFN projections, each its own integer product
    assert ops["MatMulIntegerToFloat"] == 2 * 6 and ops["MultiHeadAttention"] == 2 and ops["Attention"] == 0
    assert ops["QuantizeLinear"] == 2 * 4, "one per-row quantizer per distinct activation (Q, K, V share one)"
    assert ops["QAttention"] == ops["DynamicQuantizeLinear"] == ops["MatMulInteger"] == 0, "no batch-wide scale"
    assert ops["EmbedLayerNormalization"] == 1 and ops["MatMul"] == 2, "fp32 embedding and head"
    assert ops["QEmbedLayerNormalization"] == 0
    assert ops["BiasGelu"] == 0 and ops["Gelu"] == 2 and ops["Sum"] == 2 * 3, "biases ride Sums, not the products"
    assert result.recipe["gelu"] == "Sum(bias) + Gelu" and "batch-invariant" in result.recipe["activations"]
    assert result.kept_fp32 == ["head (pooler, classifier)", "embedding"] and result.recipe["reduce_range"] is False


@pytest.mark.parametrize("per_channel", [True, False])
def test_per_token_weights_follow_the_per_channel_option(tiny_artifact: Path, tmp_path: Path, per_channel) -> None:
    out = tmp_path / "int8.onnx"
    result = quantize_dynamic_int8(tiny_artifact / "model.opt.onnx", out, DynamicOptions(per_channel=per_channel), VNNI)
    model = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    scales = [inits[n.input[3]] for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]  # (N,) each
    assert len(scales) == 2 * 6
    distinct = [len(np.unique(s)) for s in scales]
    if per_channel:
        assert min(distinct) > 1, "one scale per output column"
        assert result.recipe["weights"] == "int8 per-channel"
    else:
        assert distinct == [1] * len(scales), "one scale for the whole weight tensor"
        assert result.recipe["weights"] == "int8 per-tensor"


def test_per_tensor_int8_makes_integer_kernels_and_keeps_the_head(tiny_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    options = DynamicOptions(activations="per_tensor", keep_embedding_fp32=False)  # the default before per_token
    result = quantize_dynamic_int8(tiny_artifact / "model.opt.onnx", out, options, VNNI)
    ops = _ops(out)
    assert ops["QAttention"] == 2 and ops["Attention"] == 0
    assert ops["QEmbedLayerNormalization"] == 1 and ops["EmbedLayerNormalization"] == 0, "int8 tables on request"
    # per layer: the attention output projection and the two FFN projections
    assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] == 6
    assert ops["MatMul"] == 2, "pooler and classifier stay fp32 (quantize_dynamic turns their Gemm into MatMul)"
    assert ops["SkipLayerNormalization"] == 0, "SkipLayerNorms split for the CPU"
    assert ops["LayerNormalization"] == ops["Sum"] == 2 * 2
    assert ops["BiasGelu"] == 0 and ops["Gelu"] == 2, "BiasGelu split for the CPU"
    assert result.recipe["layer_norm"] == "Sum + LayerNormalization"
    assert result.recipe["gelu"] == "bias in the integer GEMM + Gelu"
    assert result.recipe["weights"] == "int8 per-channel", "the default: more accurate at the same speed"
    assert result.kept_fp32 == ["head (pooler, classifier)"] and result.recipe["reduce_range"] is False
    assert out.stat().st_size < 0.5 * (tiny_artifact / "model.opt.onnx").stat().st_size


def test_instruction_set_decides_the_weight_range() -> None:
    assert choose_weight_format({"avx2": True, "avx512_vnni": True}).reduce_range is False
    assert choose_weight_format({"avx2": True, "amx_int8": True}).reduce_range is False
    avx2 = choose_weight_format({"avx2": True, "avx512_vnni": False})
    assert avx2.reduce_range is True and "saturat" in avx2.reason
    assert choose_weight_format({}).reduce_range is False


def test_layer_map_finds_layers_head_and_embedding(tiny_artifact: Path) -> None:
    mapping = layer_map(onnx.load(str(tiny_artifact / "model.opt.onnx")))
    assert len(mapping.layers) == 2
    model = onnx.load(str(tiny_artifact / "model.opt.onnx"))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert [ops[n] for n in mapping.layers[0]].count("Attention") == 1
    assert "EmbedLayerNormalization" in [ops[n] for n in mapping.embedding]
    assert sorted(ops[n] for n in mapping.head).count("Gemm") == 2


def _planted(tiny_artifact: Path, tmp_path: Path, layer: int) -> Path:
    """A fused model whose `layer` leans on one MatMul (its weights scaled up) that holds one huge
    outlier: per-tensor INT8 of that matrix then rounds every other weight of it to zero, so that
    layer carries most of the INT8 error."""
    model = onnx.load(str(tiny_artifact / "model.opt.onnx"))
    names = set(layer_map(model).layers[layer])
    inits = {t.name: t for t in model.graph.initializer}
    matmul = next(n for n in model.graph.node if n.name in names and n.op_type == "MatMul" and n.input[1] in inits)
    weight = inits[matmul.input[1]]
    array = onnx.numpy_helper.to_array(weight).copy() * 50
    array.flat[0] = np.abs(array).max() * 400
    weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
    path = tmp_path / "planted.onnx"
    onnx.save(model, str(path))
    return path


def _eval_set(path: Path, rows: int = 64):
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    batches = []
    for _ in range(rows // 16):
        ids = rng.integers(0, 21128, size=(16, 24), dtype=np.int64)
        batches.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(["logits"], feeds)[0] for feeds in batches])
    return batches, reference


def test_fallback_keeps_the_planted_sensitive_layer(tiny_artifact: Path, tmp_path: Path) -> None:
    fused = _planted(tiny_artifact, tmp_path, layer=1)
    batches, reference = _eval_set(fused)
    # the planted outlier spoils a per-tensor scale (the fallback's search is the same for either recipe)
    base = DynamicOptions(per_channel=False, activations="per_tensor")
    plain = tmp_path / "plain.onnx"
    quantize_dynamic_int8(fused, plain, base, VNNI)
    before = score(plain, batches, reference)
    target = FallbackOptions(target_agreement=0.0, max_prob_diff=before.max_prob_diff / 4)
    out = tmp_path / "int8.onnx"
    result, report = accuracy_fallback(fused, out, batches, reference, base, VNNI, target)
    assert max(report.sensitivity, key=report.sensitivity.get) == "layer 1", report.sensitivity
    assert report.met and report.kept_fp32 == ["layer 1"], report.steps
    assert "layer 1" in result.kept_fp32
    assert score(out, batches, reference).max_prob_diff <= target.max_prob_diff


def test_fallback_gives_up_with_a_report(tiny_artifact: Path, tmp_path: Path) -> None:
    fused = tiny_artifact / "model.opt.onnx"
    batches, reference = _eval_set(fused, rows=16)
    with pytest.raises(QuantizeError, match="even with every layer in fp32") as info:
        accuracy_fallback(fused, tmp_path / "x.onnx", batches, reference, DynamicOptions(), VNNI, FallbackOptions(1.01))
    assert "baseline: agreement" in str(info.value)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("calibrate", ["minmax", "percentile", "entropy"])
def test_static_qdq_calibrates_on_real_text(tiny_artifact: Path, tmp_path: Path, calibrate: str) -> None:
    from bert14.quantize.static import StaticOptions, calibration_batches, quantize_static_qdq
    from bert14.tokenizer import load_tokenizer

    tokenizer, _ = load_tokenizer(tiny_artifact)
    texts = ["央行宣布降准", "湖人主场险胜勇士", "新款手机发布", "北京二手房成交量上涨"] * 4
    batches = calibration_batches(tokenizer, texts, 512, length=32, batch=8)
    assert [b["input_ids"].shape for b in batches] == [(8, 32), (8, 32)]
    out = tmp_path / "static.onnx"
    result = quantize_static_qdq(tiny_artifact / "model.opt.onnx", out, batches, StaticOptions(calibrate), VNNI)
    ops = _ops(out)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert result.recipe["method"] == "static (QDQ)" and result.recipe["calibrate"] == calibrate
    batches, reference = _eval_set(tiny_artifact / "model.opt.onnx", rows=16)
    assert score(out, batches, reference).max_prob_diff < 0.05


def test_static_needs_calibration_texts(tiny_artifact: Path, capsys) -> None:
    from bert14.commands.cli import main

    assert main(["export", "--out", str(tiny_artifact.parent / "x"), "--int8-method", "static"]) == 2
    assert "--int8-calibration" in capsys.readouterr().err


def test_layer_norm_split_is_exact_and_survives_the_session(tiny_artifact: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from bert14.quantize.layer_norm_cpu import split_skip_layer_norm

    model = onnx.load(str(tiny_artifact / "model.opt.onnx"))
    assert split_skip_layer_norm(model) == 4
    assert not any(n.op_type == "SkipLayerNormalization" for n in model.graph.node)
    onnx.save(model, str(tmp_path / "split.onnx"))
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "as_run.onnx")  # what the session runs, after its fusions
    session = ort.InferenceSession(str(tmp_path / "split.onnx"), options, providers=["CPUExecutionProvider"])
    as_run = Counter(n.op_type for n in onnx.load(str(tmp_path / "as_run.onnx")).graph.node)
    assert as_run["SkipLayerNormalization"] == 0 and as_run["LayerNormalization"] == 4, "the session re-fused it"
    batches, reference = _eval_set(tiny_artifact / "model.opt.onnx", rows=32)
    got = np.concatenate([session.run(["logits"], feeds)[0] for feeds in batches])
    assert np.abs(got - reference).max() < 1e-5


def _as_run(path: Path, tmp_path: Path):
    """A CPU session on `path` and the op counts of the graph it runs, after its own fusions."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.as_run.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_bias_gelu_split_rides_the_integer_gemm_and_keeps_the_logits(tiny_artifact: Path, tmp_path: Path) -> None:
    from bert14.quantize.gelu_cpu import split_bias_gelu

    fused = onnx.load(str(tiny_artifact / "model.opt.onnx"))
    assert split_bias_gelu(fused) == 2
    assert Counter(n.op_type for n in fused.graph.node)["Add"] >= 2

    split, unsplit = tmp_path / "split.onnx", tmp_path / "unsplit.onnx"
    per_tensor = DynamicOptions(activations="per_tensor")  # per_token never puts a bias in the product
    quantize_dynamic_int8(tiny_artifact / "model.opt.onnx", split, per_tensor, VNNI)
    quantize_dynamic_int8(tiny_artifact / "model.opt.onnx", unsplit, replace(per_tensor, split_bias_gelu=False), VNNI)
    session, ops = _as_run(split, tmp_path)
    assert ops["Gelu"] == 2 and ops["BiasGelu"] == 0, f"the session re-fused it: {ops}"
    assert ops["Add"] == 0, "the bias should be folded into DynamicQuantizeMatMul"
    reference_session, reference_ops = _as_run(unsplit, tmp_path)
    assert reference_ops["BiasGelu"] == 2
    batches, _ = _eval_set(tiny_artifact / "model.opt.onnx", rows=32)
    got = np.concatenate([session.run(["logits"], feeds)[0] for feeds in batches])
    want = np.concatenate([reference_session.run(["logits"], feeds)[0] for feeds in batches])
    assert np.abs(got - want).max() < 1e-6  # same erf GELU of the same sum; only float rounding may differ


def test_a_tanh_gelu_model_splits_fast_gelu_the_same_way(tmp_path: Path) -> None:
    from conftest import export_with_activation

    from bert14.optimize.pipeline import optimize_file

    _, path = export_with_activation(tmp_path, "gelu_new", "dynamo")
    fused = tmp_path / "fused.onnx"
    optimize_file(path, fused)
    split, unsplit = tmp_path / "split.onnx", tmp_path / "unsplit.onnx"
    per_tensor = DynamicOptions(activations="per_tensor")
    quantize_dynamic_int8(fused, split, per_tensor, VNNI)
    quantize_dynamic_int8(fused, unsplit, replace(per_tensor, split_bias_gelu=False), VNNI)
    session, ops = _as_run(split, tmp_path)
    assert ops["FastGelu"] == 2 and ops["Add"] == 0, f"the bias should be folded into DynamicQuantizeMatMul: {ops}"
    fast = [n for n in onnx.load(str(split)).graph.node if n.op_type == "FastGelu"]
    assert all(len(n.input) == 1 for n in fast), "FastGelu without its bias input"
    reference_session, _ = _as_run(unsplit, tmp_path)
    batches, _ = _eval_set(fused, rows=32)
    got = np.concatenate([session.run(["logits"], feeds)[0] for feeds in batches])
    want = np.concatenate([reference_session.run(["logits"], feeds)[0] for feeds in batches])
    assert np.abs(got - want).max() < 1e-6


@pytest.mark.parametrize(
    ("flags", "reduce_range"),
    [
        ({"avx2": True, "avx512_vnni": True}, False),  # VNNI accumulates in 32 bits: full range is exact
        ({"avx2": True, "amx_int8": True}, False),
        ({"avx2": True}, True),  # AVX2 alone: vpmaddubsw's 16-bit pair sums saturate
        ({}, False),  # not x86, or flags unknown: no u8s8 AVX2 kernel to protect
    ],
)
def test_weight_format_follows_the_instruction_set(flags, reduce_range) -> None:
    from bert14.quantize.isa import choose_weight_format

    chosen = choose_weight_format(flags)
    assert chosen.reduce_range is reduce_range and chosen.reason


@pytest.mark.parametrize("activations", ["per_token", "per_tensor"])
def test_a_row_gets_the_same_bits_alone_and_in_any_padded_batch_only_per_token(
    tiny_artifact, tmp_path, activations
) -> None:
    """The default per-token recipe (quantize/per_token.py): each text alone, at its own length, equals its
    row of a padded batch bit for bit, with ONNX Runtime's fusions on (they must not fold a bias into the
    per-row product: ORT_DISABLE_ALL gives the same). The per-tensor recipe it replaced does not."""
    import onnxruntime as ort

    out = tmp_path / f"{activations}.onnx"
    result = quantize_dynamic_int8(tiny_artifact / "model.opt.onnx", out, DynamicOptions(activations=activations), VNNI)
    if activations == "per_token":
        assert result.recipe["per_token"] == {"attention": 2, "matmul": 6, "quantizers": 8}

    def session(level):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = 2
        return ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])

    fused = session(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    plain = session(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    rng = np.random.default_rng(7)
    ids = rng.integers(100, 20000, (5, 40)).astype(np.int64)  # (B, S)
    mask = np.ones_like(ids)
    for row, length in enumerate((40, 3, 17, 1, 29)):
        mask[row, length:] = 0
    feeds = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    batched = fused.run(None, feeds)[0]
    np.testing.assert_allclose(plain.run(None, feeds)[0], batched, atol=1e-5)
    same = []
    for row in range(5):
        n = int(mask[row].sum())
        alone = fused.run(None, {k: v[row : row + 1, :n] for k, v in feeds.items()})[0]
        same.append(bool(np.array_equal(alone[0], batched[row])))
    if activations == "per_token":
        assert all(same), f"rows changed with their batch: {same}"
    else:
        assert not all(same), "the per-tensor recipe's scale spans the batch: some row must move"


@pytest.mark.parametrize(
    ("flags", "embedding_fp32", "activations", "per_channel"),
    [
        ([], True, "per_token", True),
        (["--int8-embedding", "int8", "--int8-activations", "per_tensor", "--int8-per-tensor"], False,
         "per_tensor", False),  # fmt: skip
    ],
)
def test_export_flags_reach_the_int8_options(monkeypatch, tmp_path: Path, flags, embedding_fp32, activations,
                                             per_channel) -> None:  # fmt: skip
    import bert14.commands.build
    from bert14.commands.cli import main

    seen = []

    def capture(options):  # noqa: ANN001, ANN202
        seen.append(options)
        raise QuantizeError("stop here")

    monkeypatch.setattr(bert14.commands.build, "export_artifact", capture)
    assert main(["export", "--out", str(tmp_path / "out"), *flags]) != 0
    (options,) = seen
    assert options.int8.keep_embedding_fp32 is embedding_fp32
    assert (options.int8.activations, options.int8.per_channel) == (activations, per_channel)
