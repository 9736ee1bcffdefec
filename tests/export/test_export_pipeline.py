from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import TINY_SHAPE

from bert14.artifact import read_manifest, verify_files
from bert14.check.cases import validation_suite
from bert14.check.compare import FP32_LOGIT_ATOL, require_pass
from bert14.check.reference import validate_onnx
from bert14.commands.build import ExportOptions, export_artifact
from bert14.commands.cli import main
from bert14.errors import ParityError
from bert14.export.model import build_default
from bert14.quantize.isa import choose_weight_format

BASE_FILES = {"model.onnx", "config.json", "vocab.txt", "tokenizer_config.json", "tokenizer.json", "manifest.json"}
ARTIFACT_FILES = BASE_FILES | {
    "model.opt.onnx",
    "model.fp16.onnx",
    "model.fp16.seqlen.onnx",
    "model.int8.onnx",
    "model.int8.ov.xml",
    "model.int8.ov.bin",
}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_every_exporter_and_attention_validates(tmp_path: Path, exporter: str, attn: str) -> None:
    out = tmp_path / "art"
    options = ExportOptions(out_dir=out, exporter=exporter, attn=attn, optimize=False, shape_overrides=dict(TINY_SHAPE))
    report = export_artifact(options)
    assert {p.name for p in out.iterdir()} == BASE_FILES
    results = report.validation["model.onnx"]
    assert len(results) == 12 and all(r.passed for r in results)
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["logits"]
    for value in graph.input:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert all(dim.dim_param for dim in value.type.tensor_type.shape.dim), "batch and sequence must be dynamic"
    manifest = read_manifest(out).raw
    assert manifest["export"]["exporter"] == exporter and manifest["source"]["attn_implementation"] == attn
    assert manifest["export"]["opset"] == 18
    assert [o.version for o in onnx.load(str(out / "model.onnx")).opset_import if o.domain in ("", "ai.onnx")] == [18]


def test_manifest_records_what_the_issue_asks(tiny_artifact: Path) -> None:
    manifest = read_manifest(tiny_artifact).raw
    for package in ("python", "torch", "transformers", "onnx", "onnxruntime"):
        assert manifest["versions"][package]
    assert set(manifest["files"]) == ARTIFACT_FILES - {"manifest.json"}
    verify_files(tiny_artifact, read_manifest(tiny_artifact))
    assert "avx2" in manifest["cpu_flags"] and "amx_int8" in manifest["cpu_flags"]
    assert manifest["model"]["labels"][0] == "财经" and len(manifest["model"]["labels"]) == 14
    validation = manifest["artifacts"]["fp32"]["validation"]
    assert validation["passed"] and validation["max_abs_logit_diff"] <= FP32_LOGIT_ATOL
    assert validation["argmax_agreement"] == 1.0 and len(validation["cases"]) == 12
    fused = manifest["artifacts"]["fp32_fused"]["validation"]
    assert fused["passed"] and fused["max_abs_logit_diff"] <= FP32_LOGIT_ATOL and len(fused["cases"]) == 24
    assert any(case["case"].endswith("-left") for case in fused["cases"]), "fused parity covers left padding"
    assert manifest["fusions"]["counts"] == {
        "EmbedLayerNormalization": 1,
        "Attention": 2,
        "SkipLayerNormalization": 4,
        "BiasGelu": 2,
    }
    fp16 = manifest["artifacts"]["fp16"]
    assert fp16["file"] == "model.fp16.onnx" and fp16["validation_cpu"]["passed"]
    seqlen = manifest["artifacts"]["fp16_seqlen"]
    assert "right padding only" in seqlen["mask"] and seqlen["validation_cpu"]["passed"]
    assert all(case["case"].endswith("-right") for case in seqlen["validation_cpu"]["cases"])
    int8 = manifest["artifacts"]["int8"]
    assert int8["recipe"]["method"] == "dynamic" and int8["kept_fp32"] == ["head (pooler, classifier)", "embedding"]
    assert int8["recipe"]["reduce_range"] is choose_weight_format(manifest["cpu_flags"]).reduce_range
    assert 0 < int8["size_vs_fp32"] < 1 and int8["validation"]["passed"]
    for key in ("argmax_agreement", "max_abs_prob_diff", "mean_abs_prob_diff"):
        assert key in int8["validation"]
    assert manifest["export"]["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "sequence"}
    config = json.loads((tiny_artifact / "config.json").read_text())
    assert config["num_labels"] == 14 if "num_labels" in config else len(config["id2label"]) == 14


def test_export_is_deterministic(tmp_path: Path, tiny_artifact: Path) -> None:
    out = tmp_path / "again"
    export_artifact(ExportOptions(out_dir=out, shape_overrides=dict(TINY_SHAPE)))
    first, second = read_manifest(tiny_artifact).files, read_manifest(out).files
    assert first == second


def test_suite_covers_shapes_padding_and_segments() -> None:
    cases = validation_suite(vocab_size=21128, type_vocab_size=2, max_positions=512)
    shapes = {case.input_ids.shape for case in cases}
    assert shapes == {(b, s) for b in (1, 4, 32) for s in (1, 16, 128, 512)}
    big = next(c for c in cases if c.input_ids.shape == (32, 512))
    lengths = big.attention_mask.sum(1)
    assert lengths[0] == 512 and lengths.min() < 512, "rows must be right-padded to random lengths"
    assert (big.attention_mask[:, :-1] >= big.attention_mask[:, 1:]).all(), "padding is on the right"
    assert big.token_type_ids.any() and not (big.token_type_ids & (1 - big.attention_mask)).any()
    assert big.input_ids.max() > 20000, "ids must reach the top of the vocabulary"
    left = validation_suite(21128, 2, 512, left_pad=True)[-1]
    assert (left.attention_mask[:, :-1] <= left.attention_mask[:, 1:]).all()


def test_tampered_model_fails_validation(tmp_path: Path, tiny_artifact: Path) -> None:
    model = onnx.load(str(tiny_artifact / "model.onnx"))
    classifier = max(
        (init for init in model.graph.initializer if len(init.dims) == 2 and 14 in init.dims),
        key=lambda init: init.dims[0] * init.dims[1],
    )
    weights = onnx.numpy_helper.to_array(classifier).copy()
    weights += 0.05
    classifier.CopyFrom(onnx.numpy_helper.from_array(weights, classifier.name))
    onnx.save(model, str(tmp_path / "tampered.onnx"))
    source = build_default(**TINY_SHAPE)
    cases = validation_suite(21128, 2, 512)[:3]
    results = validate_onnx(source.model, tmp_path / "tampered.onnx", cases)
    assert not any(r.passed for r in results)
    with pytest.raises(ParityError, match="does not match PyTorch in 3 of 3 cases"):
        require_pass(results, FP32_LOGIT_ATOL, "tampered.onnx")


def test_failed_export_leaves_previous_artifact_untouched(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "art"
    export_artifact(ExportOptions(out_dir=out, shape_overrides=dict(TINY_SHAPE)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    import bert14.commands.build as pipeline

    def broken(*args, **kwargs):
        raise ParityError("planted failure")

    monkeypatch.setattr(pipeline, "validate_onnx", broken)
    with pytest.raises(ParityError):
        export_artifact(ExportOptions(out_dir=out, seed=99, shape_overrides=dict(TINY_SHAPE)))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"], "no staging directory may be left behind"


def test_cli_exports_a_checkpoint_and_refuses_a_corrupt_one(tmp_path: Path, capsys) -> None:
    from test_source_model import _save_checkpoint

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    _save_checkpoint(checkpoint, labels=7)
    out = tmp_path / "out"
    assert main(["export", "--model", str(checkpoint), "--out", str(out), "--exporter", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert "b32xs64-right" in printed and "FAIL" not in printed  # sequences capped at 64 positions
    assert "fused: EmbedLayerNormalization 1, Attention 2, SkipLayerNormalization 4, BiasGelu 2" in printed
    manifest = read_manifest(out)
    assert len(manifest.model.labels) == 7 and manifest.source["kind"] == "checkpoint"
    # a checkpoint exported without --calibration: no OpenVINO model, and a note that says how to build it
    assert {p.name for p in out.iterdir()} == ARTIFACT_FILES - {"model.int8.ov.xml", "model.int8.ov.bin"}
    assert "note: model.int8.ov.xml not built" in printed and "--calibration FILE" in printed

    weights = checkpoint / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    bad_out = tmp_path / "bad"
    assert main(["export", "--model", str(checkpoint), "--out", str(bad_out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "model.safetensors" in error and "expected" in error
    assert not bad_out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "out"]


def test_out_pointing_at_unrelated_files_is_refused(tmp_path: Path) -> None:
    from bert14.errors import InputError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="found other files"):
        export_artifact(ExportOptions(out_dir=tmp_path, shape_overrides=dict(TINY_SHAPE)))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_validation_runs_seq_one_and_full_length(tiny_artifact: Path) -> None:
    cases = validation_suite(21128, 2, 512)
    assert cases[0].input_ids.shape == (1, 1)
    source = build_default(**TINY_SHAPE)
    results = validate_onnx(source.model, tiny_artifact / "model.onnx", [cases[0], cases[-1]])
    assert all(r.passed for r in results) and np.isfinite([r.max_abs_diff for r in results]).all()


def test_option_rules_hold_for_the_api_as_for_the_cli(tmp_path: Path) -> None:
    from bert14.errors import InputError
    from bert14.quantize.fallback import FallbackOptions
    from bert14.quantize.static import StaticOptions

    texts = tmp_path / "texts.txt"
    texts.write_text("央行宣布降准\n", encoding="utf-8")
    with pytest.raises(InputError, match="fallback works with dynamic INT8 only"):
        static = {"int8_static": StaticOptions(), "int8_calibration_texts": texts}
        ExportOptions(**static, int8_fallback=FallbackOptions(), int8_eval_texts=texts)
    with pytest.raises(InputError, match="static INT8 needs calibration texts"):
        ExportOptions(int8_static=StaticOptions())
    with pytest.raises(InputError, match="needs evaluation texts"):
        ExportOptions(int8_fallback=FallbackOptions())
    assert main(["export", "--int8-method", "static", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
