from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from bert14.optimize.mask_index import use_sequence_lengths
from bert14.optimize.pipeline import save


def _run(path: Path, mask: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 21128, size=mask.shape) * mask
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)})[0]


def test_sequence_length_mask_equals_the_2d_mask_for_right_padding_only(tiny_artifact: Path, tmp_path: Path) -> None:
    model = ir.load(str(tiny_artifact / "model.opt.onnx"))
    assert use_sequence_lengths(model) == 2
    save(model, tmp_path / "seqlen.onnx")
    original, variant = tiny_artifact / "model.opt.onnx", tmp_path / "seqlen.onnx"
    right = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=np.int64)
    assert np.abs(_run(original, right) - _run(variant, right)).max() < 1e-5
    left = right[:, ::-1].copy()
    assert np.abs(_run(original, left) - _run(variant, left)).max() > 1e-4, "left padding is what it cannot express"


def test_near_misses_are_refused_with_the_reason(tiny_artifact: Path) -> None:
    import pytest

    from bert14.errors import FusionError

    unfused = ir.load(str(tiny_artifact / "model.onnx"))
    with pytest.raises(FusionError, match="expected one EmbedLayerNormalization and fused Attention"):
        use_sequence_lengths(unfused)
    fused = ir.load(str(tiny_artifact / "model.opt.onnx"))
    attention = [node for node in fused.graph if node.op_type == "Attention"]
    copy = ir.node("Identity", [attention[-1].inputs[3]], name="another_mask")
    fused.graph.insert_before(attention[-1], copy)
    attention[-1].replace_input_with(3, copy.outputs[0])  # the last layer reads a mask of its own
    with pytest.raises(FusionError, match="do not share one 2-D mask"):
        use_sequence_lengths(fused)


def test_mask_index_is_an_opt_in_pass_of_the_pipeline(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    """Off unless named (`--with mask_index`); named, the fused graph's Attention reads sequence lengths."""
    import onnx
    import pytest

    from bert14.commands.cli import main
    from bert14.errors import InputError
    from bert14.optimize.pipeline import OPT_IN, OptimizeOptions, optimize_file

    assert OPT_IN == ("mask_index",)
    source = tiny_artifact / "model.onnx"
    plain = optimize_file(source, tmp_path / "plain.onnx")
    assert "mask_index" not in plain.seconds
    report = optimize_file(source, tmp_path / "seqlen.onnx", OptimizeOptions(include=frozenset({"mask_index"})))
    assert "mask_index" in report.seconds and report.counts == plain.counts
    attention = [n for n in onnx.load(str(tmp_path / "seqlen.onnx")).graph.node if n.op_type == "Attention"]
    assert {n.input[3] for n in attention} == {"sequence_lengths"}
    right = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=np.int64)
    assert np.abs(_run(tmp_path / "plain.onnx", right) - _run(tmp_path / "seqlen.onnx", right)).max() < 1e-5
    with pytest.raises(InputError, match="expected an opt-in pass, one of \\['mask_index'\\]"):
        optimize_file(source, tmp_path / "x.onnx", OptimizeOptions(include=frozenset({"first_token"})))
    assert main(["optimize", str(source), str(tmp_path / "cli.onnx"), "--with", "mask_index"]) == 0
    assert "Attention" in capsys.readouterr().out
