"""Golden fusion counts and PyTorch parity for tiny BERTs from every exporter variant."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from conftest import TINY_SHAPE, export_with_activation

from bert14.artifact import INPUT_NAMES
from bert14.check.cases import make_case
from bert14.check.compare import FP32_LOGIT_ATOL
from bert14.check.reference import validate_onnx
from bert14.errors import FusionError
from bert14.export.model import build_default
from bert14.export.onnx_export import ExportSettings, LogitsOnly, _export_torchscript, export_onnx
from bert14.optimize.pipeline import OptimizeOptions, optimize_file

LAYERS = TINY_SHAPE["num_hidden_layers"]
GOLDEN = {"EmbedLayerNormalization": 1, "Attention": LAYERS, "SkipLayerNormalization": 2 * LAYERS, "BiasGelu": LAYERS}
VARIANTS = [
    ("torchscript", "eager", 18),
    ("torchscript", "sdpa", 18),
    ("dynamo", "eager", 18),
    ("dynamo", "sdpa", 18),
    ("torchscript", "eager", 17),
    ("torchscript", "sdpa", 17),
    ("dynamo", "eager", 17),
    ("dynamo", "sdpa", 17),
    ("torchscript", "eager", 14),  # LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/Div
]


def _export(tmp: Path, exporter: str, attn: str, opset: int):
    source = build_default(attn=attn, **TINY_SHAPE)
    path = tmp / f"{exporter}-{attn}-{opset}.onnx"
    if opset < 17:  # below what `bert14 export` offers: an old graph a user may bring
        example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in range(3))
        _export_torchscript(LogitsOnly(source.model, INPUT_NAMES).eval(), example, path, opset, INPUT_NAMES)
    else:
        export_onnx(source.model, path, ExportSettings(exporter, opset), 512)
    return source, path


def _parity_cases():
    import numpy as np

    rng = np.random.default_rng(5)
    return [
        make_case(rng, batch, sequence, 21128, 2, left_pad)
        for batch, sequence in ((1, 1), (4, 16), (3, 128))
        for left_pad in (False, True)
    ]


@pytest.mark.parametrize(("exporter", "attn", "opset"), VARIANTS, ids=[f"{e}-{a}-opset{o}" for e, a, o in VARIANTS])
def test_every_variant_fuses_fully_and_matches_pytorch(tmp_path: Path, exporter: str, attn: str, opset: int) -> None:
    source, path = _export(tmp_path, exporter, attn, opset)
    if opset < 17:
        assert any(n.op_type == "ReduceMean" for n in onnx.load(str(path)).graph.node)
    fused = tmp_path / "fused.onnx"
    report = optimize_file(path, fused)
    assert report.counts == GOLDEN and report.expected == GOLDEN
    assert not any(report.leftovers.values()), report.leftovers
    assert "first_token" not in report.reasons, report.reasons
    slices = [n for n in onnx.load(str(fused)).graph.node if n.name.startswith("first_token/")]
    assert len(slices) == 2, "the last attention's output and the last layer's input go to token 0"
    results = validate_onnx(source.model, fused, _parity_cases())  # ORT_DISABLE_ALL session
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert max(r.max_abs_diff for r in results) <= FP32_LOGIT_ATOL
    graph = onnx.load(str(fused)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {o.domain for o in onnx.load(str(fused)).opset_import} >= {"", "com.microsoft"}


def test_shortfall_fails_the_build_naming_the_pattern(tmp_path: Path) -> None:
    _, path = _export(tmp_path, "dynamo", "sdpa", 18)
    model = onnx.load(str(path))
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    softmaxes[-1].attribute[0].i = 2  # the last layer's softmax over the query axis: not attention
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(FusionError) as info:
        optimize_file(broken, tmp_path / "out.onnx", OptimizeOptions(num_layers=LAYERS))
    message = str(info.value)
    assert f"Attention: {LAYERS - 1} fused, expected {LAYERS}" in message
    assert "softmax is not over the last axis" in message
    assert not (tmp_path / "out.onnx").exists()


def test_gate_can_be_turned_off_and_report_counts_what_fused(tmp_path: Path) -> None:
    _, path = _export(tmp_path, "torchscript", "eager", 18)
    report = optimize_file(path, tmp_path / "out.onnx", OptimizeOptions(num_layers=LAYERS + 1, gate=False))
    assert report.counts["Attention"] == LAYERS and report.expected["Attention"] == LAYERS + 1
    assert report.shortfalls() == [
        f"Attention: {LAYERS} fused, expected {LAYERS + 1}",
        f"SkipLayerNormalization: {2 * LAYERS} fused, expected {2 * LAYERS + 2}",
        f"BiasGelu: {LAYERS} fused, expected {LAYERS + 1}",
    ]


def test_a_graph_without_attention_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "not-bert",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "relu.onnx"))
    with pytest.raises(FusionError, match="does not look like a BERT encoder"):
        optimize_file(tmp_path / "relu.onnx", tmp_path / "out.onnx")


def test_mask_semantics_right_left_none_and_all_but_one(tmp_path: Path) -> None:
    """The fused model reads the raw 2-D mask: every padding layout matches PyTorch."""
    import numpy as np

    source, path = _export(tmp_path, "dynamo", "sdpa", 18)
    fused = tmp_path / "fused.onnx"
    optimize_file(path, fused)
    masks = {
        "none": [[1] * 9, [1] * 9],
        "right": [[1] * 9, [1] * 5 + [0] * 4],
        "left": [[1] * 9, [0] * 4 + [1] * 5],
        "all-but-one-right": [[1] + [0] * 8, [1] * 9],
        "all-but-one-left": [[0] * 8 + [1], [1] * 9],
    }
    rng = np.random.default_rng(8)
    from bert14.check.cases import Case
    from bert14.check.compare import compare
    from bert14.check.reference import torch_logits
    from bert14.check.runners import OrtRunner

    runner = OrtRunner(fused)
    for name, rows in masks.items():
        mask = np.array(rows, dtype=np.int64)
        ids = rng.integers(0, 21128, size=mask.shape) * mask
        case = Case(name, ids, mask, np.zeros_like(mask))
        result = compare(case, torch_logits(source.model, case), runner(case), FP32_LOGIT_ATOL)
        assert result.passed, (name, result)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_one_token_type_fuses_fully_and_refuses_text_pairs(tmp_path: Path, exporter: str) -> None:
    """type_vocab_size 1 (no segment B): the probes must not feed a token type the table lacks."""
    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.errors import InputError
    from bert14.runtime import Classifier

    out = tmp_path / "art"
    shape = {**TINY_SHAPE, "type_vocab_size": 1}
    report = export_artifact(ExportOptions(out_dir=out, exporter=exporter, shape_overrides=shape))
    assert report.manifest.raw["fusions"]["counts"] == GOLDEN
    clf = Classifier.load(out, provider="cpu", warmup=False)
    assert len(clf.predict(["北京", "上海"])) == 2
    with pytest.raises(InputError, match="type_vocab_size 1"):
        clf.predict(["北京"], ["上海"])


def test_probes_stay_inside_the_embedding_tables(tmp_path: Path) -> None:
    import onnx_ir as ir

    from bert14.optimize.probe import probe_feeds, table_rows

    source = build_default(**{**TINY_SHAPE, "vocab_size": 40, "type_vocab_size": 1})
    path = tmp_path / "m.onnx"
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in range(2)) + (torch.zeros(2, 8, dtype=torch.long),)
    wrapper = LogitsOnly(source.model, INPUT_NAMES).eval()
    _export_torchscript(wrapper, example, path, 18, INPUT_NAMES)  # the exporter's own ids exceed 40
    model = ir.load(path)
    assert table_rows(model) == (40, 1)
    for feed in probe_feeds(model):
        assert feed.input_ids.max() < 40 and not feed.token_type_ids.any()
    assert any(feed.token_type_ids.any() for feed in probe_feeds())  # two types by default
    fused = tmp_path / "fused.onnx"
    optimize_file(path, fused)
    assert table_rows(ir.load(fused)) == (40, 1)  # read from EmbedLayerNormalization once fused


GELU_VARIANTS = [
    ("gelu_python", "torchscript", "BiasGelu"),
    ("gelu_python", "dynamo", "BiasGelu"),
    ("gelu_new", "torchscript", "FastGelu"),
    ("gelu_new", "dynamo", "FastGelu"),
    ("gelu_pytorch_tanh", "torchscript", "FastGelu"),
    ("gelu_pytorch_tanh", "dynamo", "FastGelu"),
    ("gelu_fast", "dynamo", "FastGelu"),
    ("gelu_accurate", "torchscript", "FastGelu"),
]


@pytest.mark.parametrize(("act", "exporter", "op"), GELU_VARIANTS, ids=[f"{a}-{e}" for a, e, _ in GELU_VARIANTS])
def test_every_gelu_form_fuses_with_its_bias_and_matches_pytorch(tmp_path: Path, act: str, exporter: str, op: str):
    model, path = export_with_activation(tmp_path, act, exporter)
    fused = tmp_path / "fused.onnx"
    report = optimize_file(path, fused)
    expected = {**{k: v for k, v in GOLDEN.items() if k != "BiasGelu"}, op: LAYERS}
    assert report.counts == expected and report.expected == expected
    graph = onnx.load(str(fused)).graph
    assert not [n for n in graph.node if n.op_type in ("Erf", "Pow")], "a GELU was left unfused"
    assert sum(n.op_type == "Tanh" for n in graph.node) == 1, "only the pooler's Tanh is left"
    slices = [n for n in graph.node if n.name.startswith("first_token/")]
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert len(slices) == 2 and op not in {producers.get(n.input[0]) for n in slices}, "the FFN runs on token 0"
    results = validate_onnx(model, fused, _parity_cases())
    assert all(r.passed for r in results) and max(r.max_abs_diff for r in results) <= FP32_LOGIT_ATOL


@pytest.mark.parametrize(
    ("skip", "absent", "left"),
    [
        ("attention", "Attention", "Softmax"),
        ("gelu", "BiasGelu", "Erf"),
        ("skip_layer_norm", "SkipLayerNormalization", "LayerNormalization"),
    ],
)
def test_a_skipped_pass_is_off_and_the_gate_expects_what_is_left(tmp_path: Path, skip, absent, left) -> None:
    source, path = _export(tmp_path, "dynamo", "sdpa", 18)
    fused = tmp_path / "fused.onnx"
    report = optimize_file(path, fused, OptimizeOptions(skip=frozenset({skip})))
    nodes = [n.op_type for n in onnx.load(str(fused)).graph.node]
    assert absent not in nodes and left in nodes and report.skipped == [skip]
    assert absent not in report.expected and skip not in report.seconds
    others = {op: n for op, n in GOLDEN.items() if op in report.expected}
    assert {op: report.counts[op] for op in others} == others, "the other passes still fuse fully"
    results = validate_onnx(source.model, fused, _parity_cases())
    assert all(r.passed for r in results), "a graph with a pass skipped is still the same model"


def test_skip_names_are_checked(tmp_path: Path) -> None:
    from bert14.errors import InputError

    _, path = _export(tmp_path, "dynamo", "sdpa", 18)
    with pytest.raises(InputError, match="expected a pass name"):
        optimize_file(path, tmp_path / "o.onnx", OptimizeOptions(skip=frozenset({"atention"})))
    with pytest.raises(InputError, match="always runs"):
        optimize_file(path, tmp_path / "o.onnx", OptimizeOptions(skip=frozenset({"upgrade"})))


def test_cli_skip_and_debug_print_each_pass_refusals(tmp_path: Path, capsys) -> None:
    from bert14.commands.cli import main

    _, path = _export(tmp_path, "torchscript", "eager", 14)
    assert main(["optimize", str(path), str(tmp_path / "o.onnx"), "--skip", "first_token", "--debug"]) == 0
    out = capsys.readouterr().out
    assert "skipped: first_token" in out and f"BiasGelu                      {LAYERS}" in out.replace("   (", "(")
    assert "  gelu: onnxscript" in out or "  skip_layer_norm: onnxscript" in out or "  layer_norm: onnxscript" in out


def test_the_cli_reports_a_skipped_pass_instead_of_failing(tmp_path: Path) -> None:
    """`bert14 optimize --skip attention` once ended in an internal error (exit 1) printing its report."""
    import subprocess
    import sys

    _, path = _export(tmp_path, "dynamo", "sdpa", 18)
    cli = str(Path(sys.executable).parent / "bert14")
    done = subprocess.run([cli, "optimize", str(path), str(tmp_path / "o.onnx"), "--skip", "attention"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Attention" in done.stdout and "not expected: a pass it needs was skipped" in done.stdout
    assert "skipped: attention" in done.stdout and (tmp_path / "o.onnx").is_file()
