"""Multi-label and regression checkpoints: exported, checked and served as Hugging Face reads them.

The reference is transformers' own text-classification pipeline on the same checkpoint, so a
multi-label model gets independent sigmoids and a regression model its raw outputs, not a softmax.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_source_model import _expect_input_error, _save_checkpoint

from bert14.check.artifact import check_artifact, failures
from bert14.commands.build import ExportOptions, export_artifact
from bert14.commands.cli import main
from bert14.errors import InputError
from bert14.runtime import Classifier

TEXTS = ["hello world", "abc 123", "", "the quick brown fox jumps over the lazy dog " * 3]
# The classifier's bias: label 0 clearly applies, label 1 clearly not, label 2 is up to the encoder.
HEADS = {
    "multi_label": (3, "multi_label_classification", [4.0, -4.0, 0.0], "sigmoid"),
    "regression": (1, "regression", [0.7], "identity"),
    "one_output": (1, None, [0.3], "sigmoid"),
}
# fp32 against PyTorch fp32: the export gate's tolerance (check/compare.py).
SCORE_ATOL = 1e-4


@pytest.fixture(scope="module")
def head_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """{head: (checkpoint, artifact)}, each exported once for this module."""
    root = tmp_path_factory.mktemp("heads")
    out = {}
    for name, (labels, problem_type, bias, _) in HEADS.items():
        checkpoint = root / f"{name}-ckpt"
        checkpoint.mkdir()
        _save_checkpoint(checkpoint, labels=labels, problem_type=problem_type, bias=bias)
        artifact = root / name
        export_artifact(ExportOptions(model_dir=checkpoint, out_dir=artifact, exporter="torchscript"))
        out[name] = (checkpoint, artifact)
    return out


def _pipeline_scores(checkpoint: Path, texts: list[str]) -> list[dict[str, float]]:
    from transformers import BertTokenizer, pipeline

    from bert14.export.model import load_checkpoint

    source = load_checkpoint(checkpoint)
    classify = pipeline(
        "text-classification",
        model=source.model,
        tokenizer=BertTokenizer(str(checkpoint / "vocab.txt"), model_max_length=64),
    )
    return [{d["label"]: d["score"] for d in row} for row in classify(texts, top_k=None, truncation=True)]


@pytest.mark.parametrize("head", list(HEADS))
def test_predictions_read_the_logits_as_transformers_does(head_artifacts, head: str) -> None:
    checkpoint, artifact = head_artifacts[head]
    function = HEADS[head][3]
    expected = _pipeline_scores(checkpoint, TEXTS)
    clf = Classifier.load(artifact, precision="fp32", provider="cpu")
    assert clf.score_function == function and clf.describe()["score_function"] == function
    for prediction, want in zip(clf.predict(TEXTS), expected, strict=True):
        assert set(prediction.probs) == set(want)
        assert max(abs(prediction.probs[k] - want[k]) for k in want) <= SCORE_ATOL, (prediction.probs, want)
        top = max(want, key=want.get)
        assert prediction.label == top and prediction.score == prediction.probs[top]
        if function == "identity":
            assert prediction.labels == ()
        else:
            assert prediction.labels == tuple(k for k in clf.labels if prediction.probs[k] >= 0.5)
    if head == "multi_label":
        applied = [p.labels for p in clf.predict(TEXTS)]
        assert all("LABEL_0" in labels and "LABEL_1" not in labels for labels in applied)
        probs = clf.logits(TEXTS)
        assert not np.allclose(np.exp(probs).sum(-1), 1.0)  # scores are not a softmax


def test_threshold_decides_which_sigmoid_labels_apply(head_artifacts) -> None:
    _, artifact = head_artifacts["multi_label"]
    for threshold in (0.01, 0.3, 0.9, 0.99):
        clf = Classifier.load(artifact, precision="int8", provider="cpu", threshold=threshold, warmup=False)
        for p in clf.predict(TEXTS):
            assert p.labels == tuple(k for k in clf.labels if p.probs[k] >= threshold)
            if threshold == 0.01:
                assert len(p.labels) == 3  # sigmoid(-4) = 0.018
            if threshold == 0.99:
                assert p.labels == ()  # sigmoid(4) = 0.982
    for bad in (0.0, 1.0, -0.5, "0.5", True):
        with pytest.raises(InputError, match="threshold between 0 and 1"):
            Classifier.load(artifact, threshold=bad, warmup=False)


def test_label_thresholds_override_the_default_for_the_labels_they_name(head_artifacts) -> None:
    _, artifact = head_artifacts["multi_label"]
    clf = Classifier.load(
        artifact, precision="fp32", provider="cpu", threshold=0.01, label_thresholds={"LABEL_0": 0.99}
    )
    assert clf.describe()["thresholds"] == {"LABEL_0": 0.99, "LABEL_1": 0.01, "LABEL_2": 0.01}
    for p in clf.predict(TEXTS):
        assert p.labels == ("LABEL_1", "LABEL_2")  # LABEL_0 scores 0.982 < 0.99; the others are over 0.01
    with pytest.raises(InputError, match=r"names \['LABEL_9'\], not labels of this model"):
        Classifier.load(artifact, label_thresholds={"LABEL_9": 0.5}, warmup=False)
    with pytest.raises(InputError, match="threshold for 'LABEL_1' between 0 and 1"):
        Classifier.load(artifact, label_thresholds={"LABEL_1": 2.0}, warmup=False)


def test_cli_prints_the_labels_that_apply_at_its_threshold(head_artifacts, capsys) -> None:
    _, artifact = head_artifacts["multi_label"]
    for threshold, expected in (("0.01", ["LABEL_0", "LABEL_1", "LABEL_2"]), ("0.99", [])):
        assert main(["predict", str(artifact), "hello world", "--provider", "cpu", "--threshold", threshold]) == 0
        row = json.loads(capsys.readouterr().out)
        assert row["labels"] == expected and row["label"] == "LABEL_0"
    assert main(["predict", str(artifact), "hello", "--threshold", "1.5"]) == 2
    assert "expected a threshold between 0 and 1" in capsys.readouterr().err
    args = ["--threshold", "0.01", "--label-threshold", "LABEL_2=0.99", "--label-threshold", "LABEL_0=0.5"]
    assert main(["predict", str(artifact), "hello world", "--provider", "cpu", *args]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == ["LABEL_0", "LABEL_1"]
    assert main(["predict", str(artifact), "hello", "--label-threshold", "LABEL_0"]) == 2
    assert "expected LABEL=SCORE" in capsys.readouterr().err


# The multi-label head at --threshold 0.01 --label-threshold LABEL_0=0.99 (test_cli_prints_...):
# LABEL_0 scores 0.982 < 0.99, the others are over 0.01.
THRESHOLD_FLAGS = ["--threshold", "0.01", "--label-threshold", "LABEL_0=0.99"]
AT_THRESHOLD_FLAGS = ["LABEL_1", "LABEL_2"]


def test_batch_decides_labels_with_the_threshold_flags_as_predict_does(head_artifacts, tmp_path: Path) -> None:
    """Issue 22: `bert14 batch` had no --threshold / --label-threshold (its options re-listed LoadOptions')."""
    pytest.importorskip("ray", reason="bert14 batch needs the ray extra")
    _, artifact = head_artifacts["multi_label"]
    texts = [t for t in TEXTS if t]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["batch", str(artifact), "--input", str(tmp_path / "in.txt"), "--output", str(out), "--output-format",
            "jsonl", "--workers", "1", "--threads-per-worker", "1", "--quiet", *THRESHOLD_FLAGS]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((out / "_bert14_batch.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for name in manifest["files"] for line in (out / name).read_text().splitlines()]
    assert [r["labels"] for r in sorted(rows, key=lambda r: r["id"])] == [AT_THRESHOLD_FLAGS] * len(texts)
    assert manifest["model"]["threshold"] == 0.01 and manifest["model"]["label_thresholds"] == {"LABEL_0": 0.99}


def test_the_triton_postprocess_answers_labels_at_the_repositorys_thresholds(head_artifacts, tmp_path: Path) -> None:
    """Issue 22: the Triton postprocess model returned no `labels`; now the same ones as predict."""
    from triton_stub import Tensor, install_pb_utils, load_model

    _, artifact = head_artifacts["multi_label"]
    assert main(["triton-repo", str(artifact), str(tmp_path / "repo"), *THRESHOLD_FLAGS]) == 0
    at = {"threshold": 0.01, "label_thresholds": {"LABEL_0": 0.99}}  # THRESHOLD_FLAGS
    clf = Classifier.load(artifact, precision="fp32", provider="cpu", **at)
    with pytest.MonkeyPatch.context() as patch:
        install_pb_utils(patch)
        post = load_model(tmp_path / "repo" / "bert14_postprocess" / "1" / "model.py")
        (answer,) = post.execute([{"logits": Tensor("logits", clf.logits(TEXTS))}])
    expected = [[label in p.labels for label in clf.labels] for p in clf.predict(TEXTS)]
    assert answer.outputs["labels"].dtype == np.bool_ and answer.outputs["labels"].tolist() == expected
    assert expected == [[False, True, True]] * len(TEXTS)
    assert main(["triton-repo", str(artifact), str(tmp_path / "bad"), "--label-threshold", "LABEL_9=0.5"]) == 2
    assert not (tmp_path / "bad").exists(), "refused before anything is written"


def test_manifest_records_the_head_and_check_reads_it(head_artifacts) -> None:
    for name, (_, artifact) in head_artifacts.items():
        model = json.loads((artifact / "manifest.json").read_text())["model"]
        assert model["problem_type"] == HEADS[name][1] and model["score_function"] == HEADS[name][3]
        reports = check_artifact(artifact, TEXTS)
        assert failures(reports) == [] and {"fp32", "fp32_fused", "fp16", "int8"} <= set(reports)
        assert all(r["score_function"] == HEADS[name][3] for r in reports.values())


def test_artifacts_without_a_recorded_head_read_as_before(tiny_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(tiny_artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for key in ("problem_type", "score_function"):
        manifest["model"].pop(key)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    clf = Classifier.load(copy, precision="int8", provider="cpu", warmup=False)
    assert clf.score_function == "softmax"
    assert abs(sum(clf.predict(["北京"])[0].probs.values()) - 1) < 1e-6


def test_a_problem_type_transformers_does_not_know_is_refused(tmp_path: Path) -> None:
    _save_checkpoint(tmp_path, labels=3)
    config = tmp_path / "config.json"
    raw = json.loads(config.read_text())
    config.write_text(json.dumps({**raw, "problem_type": "ranking"}))
    _expect_input_error(tmp_path, "expected problem_type null or one of")
    config.write_text(
        json.dumps(
            {
                **raw,
                "problem_type": "single_label_classification",
                "num_labels": 1,
                "id2label": {"0": "LABEL_0"},
                "label2id": {"LABEL_0": 0},
            }
        )
    )
    _expect_input_error(tmp_path, "needs 2 or more labels")
