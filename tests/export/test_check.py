from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx

from bert14.check.artifact import check_artifact
from bert14.check.cases import SAMPLE_TEXTS
from bert14.commands.cli import main

FIELDS = {"max_abs_logit_diff", "mean_abs_logit_diff", "max_abs_prob_diff", "top1_agreement", "passed", "buckets"}


def test_check_passes_on_a_fresh_artifact_with_every_field(tiny_artifact: Path, capsys) -> None:
    assert main(["check", str(tiny_artifact), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"fp32", "fp32_fused", "fp16", "fp16_seqlen", "int8", "int8_openvino"}
    for summary in report.values():
        assert FIELDS <= set(summary) and summary["passed"]
        assert set(summary["buckets"]) == {"1-16", "17-64", "65-128", "129-512", "truncated"}
        for stats in summary["buckets"].values():
            assert {"max_abs_logit_diff", "top1_agreement", "rows"} <= set(stats)
    assert report["fp32"]["top1_agreement"] == 1.0 and report["fp32"]["max_abs_logit_diff"] <= 1e-4


def test_texts_file_is_used_and_long_texts_land_in_truncated(tiny_artifact: Path, tmp_path: Path) -> None:
    from bert14 import progress

    seen: list[tuple[str, int, int]] = []
    with progress.reporting(lambda text, done, total: seen.append((text, done, total))):
        reports = check_artifact(tiny_artifact, ["短标题", "长文" * 600])
    stages = [text for text, _, total in seen if total == 0]
    assert stages[0] == "rebuilding the source model" and len(stages) == 1 + 2 * len(reports)  # parity, invariance
    steps = [(done, total) for _, done, total in seen if total]
    assert all(done <= total for done, total in steps) and steps[-1][0] == steps[-1][1] > 0
    for key, report in reports.items():  # each artifact alone vs batched, as served: the same bits
        invariance = report["invariance"]
        assert invariance["rows"] == 32 and invariance["comparisons"] == 3 * 32, (key, invariance)
        assert invariance["identical"] == invariance["comparisons"] and invariance["passed"], (key, invariance)
    buckets = reports["fp32"]["buckets"]
    assert buckets["truncated"]["rows"] == 1
    assert any(len(text) > 1000 for text in SAMPLE_TEXTS), "the built-in sample reaches the truncated bucket"


def test_a_corrupted_weight_fails_naming_artifact_and_bucket(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    model = onnx.load(str(copy / "model.opt.onnx"))
    qkv = next(t for t in model.graph.initializer if t.name.endswith("qkv_weight"))
    array = onnx.numpy_helper.to_array(qkv).copy()
    hidden = array.shape[0]
    array[:, 2 * hidden : 2 * hidden + 8] += 0.5  # first layer, value projection of one head
    qkv.CopyFrom(onnx.numpy_helper.from_array(array, qkv.name))
    onnx.save(model, str(copy / "model.opt.onnx"))
    assert main(["check", str(copy)]) == 4
    captured = capsys.readouterr()
    assert "fp32_fused (model.opt.onnx): fails in bucket(s) 1-16" in captured.err
    assert "does not match the sha256" in captured.out
    failed = [
        part.split(" (")[0].strip() for part in captured.err.split("check failed:")[1].split("; ") if " (" in part
    ]
    assert failed == ["fp32_fused"], "only the corrupted artifact fails; the others still pass"


def test_missing_artifact_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["check", str(tmp_path / "none")]) == 6
    assert "expected an artifact directory" in capsys.readouterr().err


def test_check_on_cuda_without_the_cuda_provider_says_so(tiny_artifact: Path, capsys, monkeypatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert main(["check", str(tiny_artifact), "--provider", "cuda"]) == 2
    assert "this onnxruntime has no CUDA provider" in capsys.readouterr().err


def test_a_moved_checkpoint_is_named_and_found_with_model_and_must_be_the_same(
    tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    from test_source_model import _save_checkpoint

    from bert14.commands.build import ExportOptions, export_artifact

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    _save_checkpoint(checkpoint, labels=3)
    artifact = tmp_path / "art"
    export_artifact(ExportOptions(model_dir=checkpoint, out_dir=artifact, exporter="torchscript", optimize=False))
    moved = tmp_path / "elsewhere"
    checkpoint.rename(moved)
    assert main(["check", str(artifact)]) == 2
    assert "is not there; pass its directory" in capsys.readouterr().err
    assert main(["check", str(artifact), "--model", str(moved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fp32"]["passed"]

    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "id2label": {"0": "a", "1": "b", "2": "c"}}))
    assert main(["check", str(artifact), "--model", str(moved)]) == 2
    error = capsys.readouterr().err
    assert "config.json: not the file this artifact was exported from" in error and error.count("\n") == 1
    assert main(["check", str(tiny_artifact), "--model", str(moved)]) == 2
    assert "exported from the default model" in capsys.readouterr().err


def test_a_truncated_model_file_is_one_line_naming_it(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    data = (copy / "model.int8.onnx").read_bytes()
    (copy / "model.int8.onnx").write_bytes(data[: len(data) // 2])  # a copy cut short
    assert main(["check", str(copy)]) == 6
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "model.int8.onnx: ONNX Runtime could not load it" in error
