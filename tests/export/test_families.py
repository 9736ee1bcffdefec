"""The BERT family: RoBERTa, XLM-R, DistilBERT, ELECTRA and ERNIE through the whole pipeline.

Each family's tiny seeded checkpoint (conftest.family_artifacts, written as save_pretrained writes
it) is exported with every variant; these tests hold each to the same gates as BERT: full fusion
with both exporters and both attention implementations, parity with PyTorch on texts past the
position limit, the runtime's tokenizer id for id with transformers' AutoTokenizer, and every surface.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import FAMILY_LABELS, FAMILY_POSITIONS, FAMILY_SHAPES, family_shape

from bert14.errors import InputError
from bert14.family import FAMILIES

FAMILY_NAMES = list(FAMILY_SHAPES)
LAYERS = 2
# The fused ops of an encoder of LAYERS layers (optimize/pipeline.py): 1 / L / 2L / L.
GOLDEN = {"EmbedLayerNormalization": 1, "Attention": LAYERS, "SkipLayerNormalization": 2 * LAYERS, "BiasGelu": LAYERS}
LONG_TEXT = "市场 news 经济增长，CEO 表示。" * 40  # about 400 tokens in every family's tokenizer: past the limit
TEXTS = ["湖人主场险胜勇士", "央行宣布降准 0.5 个百分点", "iPhone 新品发布", LONG_TEXT, "", "a <s> b </s> [SEP] <pad>"]


@pytest.mark.parametrize("model_type", FAMILY_NAMES)
def test_the_artifact_is_fully_fused_and_passes_every_gate(family_artifacts, model_type: str) -> None:
    _, artifact = family_artifacts[model_type]
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    family = FAMILIES[model_type]
    assert (manifest["model"]["model_type"], manifest["model"]["architecture"]) == (model_type, family.architecture)
    assert manifest["model"]["max_tokens"] == FAMILY_POSITIONS
    assert manifest["fusions"]["counts"] == GOLDEN and not any(manifest["fusions"]["leftovers"].values())
    assert set(manifest["artifacts"]) == {"fp32", "fp32_fused", "fp16", "fp16_seqlen", "int8", "int8_openvino"}
    inputs = [
        value.name for value in onnx.load(str(artifact / "model.int8.onnx"), load_external_data=False).graph.input
    ]
    assert tuple(inputs) == family.input_names
    fused = onnx.load(str(artifact / "model.opt.onnx")).graph
    assert any(n.op_type == "Slice" and n.name.startswith("first_token/") for n in fused.node), "the head's tail"
    for name in family.support_files:
        assert (artifact / name).is_file(), name
    assert (artifact / "vocab.txt").is_file() == (family.tokenizer == "WordPiece")


def test_positions_from_padding_feed_the_fused_op_and_constant_rows_are_folded(family_artifacts) -> None:
    """RoBERTa's and XLM-R's positions stay a subgraph fed to EmbedLayerNormalization's position_ids;
    BERT-like positions are the op's own 0..S-1; ERNIE's task-type row and RoBERTa's all-zero token
    type are folded into the position table (so its table differs from the checkpoint's)."""
    from safetensors.torch import load_file

    for model_type in FAMILY_NAMES:
        checkpoint, artifact = family_artifacts[model_type]
        graph = onnx.load(str(artifact / "model.opt.onnx")).graph
        (node,) = [n for n in graph.node if n.op_type == "EmbedLayerNormalization"]
        fed = len(node.input) == 9 and node.input[8] != ""
        assert fed == FAMILIES[model_type].positions_after_padding, model_type
        table = next(i for i in graph.initializer if i.name == node.input[3])
        weights = load_file(str(checkpoint / "model.safetensors"))
        stored = next(v for k, v in weights.items() if k.endswith("position_embeddings.weight")).numpy()
        folded = model_type in ("roberta", "xlm-roberta", "ernie")
        assert np.array_equal(onnx.numpy_helper.to_array(table), stored) != folded, model_type


@pytest.mark.parametrize("model_type", FAMILY_NAMES)
def test_torchscript_export_with_eager_attention_fuses_and_matches_pytorch(tmp_path: Path, model_type: str) -> None:
    from bert14.check.cases import validation_suite
    from bert14.check.reference import validate_onnx
    from bert14.export.families import seeded_checkpoint, seeded_corpus
    from bert14.export.model import load_checkpoint
    from bert14.export.onnx_export import ExportSettings, export_onnx
    from bert14.optimize.pipeline import OptimizeOptions, optimize_file

    checkpoint = seeded_checkpoint(model_type, tmp_path / "ckpt", family_shape(model_type), FAMILY_LABELS,
                                   seeded_corpus(texts=300), attn="eager")  # fmt: skip
    source = load_checkpoint(checkpoint, "eager")
    export_onnx(source.model, tmp_path / "model.onnx", ExportSettings("torchscript", 17), source.max_tokens)
    report = optimize_file(tmp_path / "model.onnx", tmp_path / "fused.onnx", OptimizeOptions(family=source.family))
    assert report.counts == GOLDEN
    cases = validation_suite(source.config.vocab_size, source.shape["type_vocab_size"], source.max_tokens)
    cases += validation_suite(
        source.config.vocab_size, source.shape["type_vocab_size"], source.max_tokens, left_pad=True
    )
    results = validate_onnx(source.model, tmp_path / "fused.onnx", cases)
    assert all(result.passed for result in results), [r for r in results if not r.passed]


@pytest.mark.parametrize("model_type", FAMILY_NAMES)
def test_check_passes_on_texts_past_the_limit_and_in_windows(family_artifacts, model_type: str) -> None:
    from bert14.check.artifact import check_artifact, failures
    from bert14.check.long_text import check_long_text, long_text_failures
    from bert14.long_text import LongText

    _, artifact = family_artifacts[model_type]
    reports = check_artifact(artifact, texts=TEXTS)
    assert set(reports) == {"fp32", "fp32_fused", "fp16", "fp16_seqlen", "int8", "int8_openvino"}
    assert failures(reports) == []
    result = check_long_text(artifact, [LONG_TEXT, "短文本"], LongText("windows", stride=24))
    assert long_text_failures(result) == [] and set(result["runs"]) == {"fp32_fused", "int8", "int8_openvino"}
    assert all(run["rows"] > 2 for run in result["runs"].values()), "the long text took several windows"


@pytest.mark.parametrize("model_type", FAMILY_NAMES)
def test_the_runtime_answers_alike_on_every_cpu_engine_and_batched(family_artifacts, model_type: str) -> None:
    from bert14.runtime import Classifier

    _, artifact = family_artifacts[model_type]
    answers = {}
    for precision, engine in (("fp32", "onnxruntime"), ("int8", "onnxruntime"), ("int8", "openvino")):
        clf = Classifier.load(artifact, precision=precision, engine=engine, provider="cpu", threads=1)
        assert clf.max_length == FAMILY_POSITIONS
        batched = clf.predict(TEXTS)
        alone = [clf.predict([text])[0] for text in TEXTS]
        assert [p.probs for p in batched] == [p.probs for p in alone], f"{precision}/{engine}: batch-invariant"
        assert [p.truncated for p in batched] == [False, False, False, True, False, False]
        answers[(precision, engine)] = np.array([list(p.probs.values()) for p in batched])
    fp32 = answers[("fp32", "onnxruntime")]
    for key, probs in answers.items():
        assert np.abs(probs - fp32).max() < 0.05, key


@pytest.mark.parametrize("model_type", FAMILY_NAMES)
def test_server_describes_the_family_and_answers_on_both_apis(family_artifacts, model_type: str) -> None:
    from fastapi.testclient import TestClient

    from bert14.runtime import Classifier
    from bert14.runtime.server import ServerOptions, create_app

    _, artifact = family_artifacts[model_type]
    clf = Classifier.load(artifact, precision="int8", provider="cpu", threads=1)
    with TestClient(create_app(clf, ServerOptions()), base_url="http://localhost") as client:
        model = client.get("/v1/model").json()
        assert (model["model"]["model_type"], model["model"]["architecture"]) == (
            model_type,
            FAMILIES[model_type].architecture,
        )
        answer = client.post("/v1/classify", json={"texts": TEXTS[:4]}).json()
        assert [p["label"] for p in answer["predictions"]] == [p.label for p in clf.predict(TEXTS[:4])]
        body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS[:2]}]}
        v2 = client.post("/v2/models/bert14/infer", json=body)
        assert v2.status_code == 200, v2.text


def test_cli_predict_on_a_roberta_artifact(family_artifacts) -> None:
    import subprocess
    import sys

    _, artifact = family_artifacts["roberta"]
    done = subprocess.run(
        [sys.executable, "-m", "bert14.commands.cli", "predict", str(artifact), "湖人主场险胜勇士"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["label"] in FAMILY_LABELS


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
def test_triton_repository_feeds_the_familys_inputs(family_artifacts, tmp_path: Path, model_type: str) -> None:
    from bert14.scale.triton import MODEL, TOKENIZE, RepoOptions, write_repo

    _, artifact = family_artifacts[model_type]
    write_repo(artifact, tmp_path / "repo", RepoOptions())
    config = (tmp_path / "repo" / MODEL / "config.pbtxt").read_text(encoding="utf-8")
    assert ("token_type_ids" in config) == FAMILIES[model_type].segments
    settings = json.loads((tmp_path / "repo" / TOKENIZE / "1" / "bert14_tokenize.json").read_text())
    assert settings["inputs"] == list(FAMILIES[model_type].input_names)
    assert settings["pad_id"] == (1 if model_type == "roberta" else 0)  # RoBERTa pads with <pad> = 1


@pytest.mark.parametrize("model_type", ["deberta-v2", "modernbert", "mpnet", "albert", "camembert", "gpt2", None, 7])
def test_an_unsupported_family_is_refused_in_one_line_naming_the_supported(tmp_path: Path, model_type) -> None:
    from bert14.commands.build import ExportOptions, export_artifact

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": model_type, "hidden_size": 32}))
    with pytest.raises(InputError) as refused:
        export_artifact(ExportOptions(model_dir=tmp_path / "ckpt", out_dir=tmp_path / "out"))
    message = str(refused.value)
    assert "\n" not in message and f"model_type {model_type!r} is not supported" in message
    for family in FAMILIES.values():
        assert f"'{family.model_type}' ({family.architecture})" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "nothing written"


HOSTILE = [
    (
        "ernie",
        "config.json",
        {"use_task_id": "yes"},
        "not a valid ErnieConfig (Validation error for field 'use_task_id'",
    ),
    ("distilbert", "config.json", {"activation": "relu"}, "expected activation one of"),
    ("roberta", "config.json", {"max_position_embeddings": 3}, "leaves no room for a text after the 2 rows"),
    ("roberta", "config.json", {"hidden_size": "big"}, "expected integer fields hidden_size"),
    ("xlm-roberta", "tokenizer_config.json", {"pad_token": "<nope>"}, "expected the pad_token '<nope>' in the vocab"),
    ("roberta", "tokenizer.json", None, "expected a BPE tokenizer (model BPE, pre-tokenizer one of ['ByteLevel'])"),
    ("roberta", "tokenizer.json", lambda raw: _move_token_past(raw, 3000),
     "tokenizer.json: expected token ids below vocab_size=3000 (config.json), found ids up to 3000"),
]


def _move_token_past(raw: dict, vocab_size: int) -> None:
    """One token of the BPE vocabulary given an id past the model's embedding rows."""
    vocab = raw["model"]["vocab"]
    token = next(token for token, index in vocab.items() if index == 100)
    vocab[token] = vocab_size


@pytest.mark.parametrize(("model_type", "name", "change", "fragment"), HOSTILE)
def test_a_bad_family_checkpoint_is_refused_in_one_line_before_any_work(
    family_artifacts, tmp_path: Path, model_type: str, name: str, change, fragment: str
) -> None:
    import shutil

    from bert14.export.model import load_checkpoint

    checkpoint = shutil.copytree(family_artifacts[model_type][0], tmp_path / "ckpt")
    if change is None:  # another family's tokenizer: DistilBERT's WordPiece tokenizer.json in a RoBERTa checkpoint
        shutil.copyfile(family_artifacts["distilbert"][0] / name, checkpoint / name)
    elif callable(change):
        raw = json.loads((checkpoint / name).read_text(encoding="utf-8"))
        change(raw)
        (checkpoint / name).write_text(json.dumps(raw), encoding="utf-8")
    else:
        raw = json.loads((checkpoint / name).read_text(encoding="utf-8"))
        (checkpoint / name).write_text(json.dumps({**raw, **change}), encoding="utf-8")
    with pytest.raises(InputError) as refused:
        load_checkpoint(checkpoint)
    assert fragment in str(refused.value) and "\n" not in str(refused.value)
