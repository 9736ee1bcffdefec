"""The artifact contract: one list of file names, a typed manifest whose schema version is checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bert14.artifact import ARTIFACT_FILE_NAMES, MODEL_FILES, SUPPORT_FILES, read_manifest
from bert14.errors import ArtifactError
from bert14.runtime import Classifier


def _copy_with(tiny_artifact: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    change(raw)
    (copy / "manifest.json").write_text(json.dumps(raw))
    return copy


def test_every_file_of_an_export_is_named_by_the_contract(tiny_artifact: Path) -> None:
    manifest = read_manifest(tiny_artifact)
    assert set(manifest.files) | {"manifest.json"} == ARTIFACT_FILE_NAMES
    assert {p.name for p in tiny_artifact.iterdir()} == ARTIFACT_FILE_NAMES
    assert set(manifest.artifacts) == set(MODEL_FILES) and set(SUPPORT_FILES) <= set(manifest.files)
    assert manifest.model.labels[0] == "财经" and manifest.model.max_position_embeddings == 512


def test_a_manifest_from_a_newer_bert14_is_refused_with_what_to_do(tiny_artifact: Path, tmp_path: Path) -> None:
    copy = _copy_with(tiny_artifact, tmp_path, lambda raw: raw.update(schema_version=2))
    with pytest.raises(ArtifactError, match="written by a newer bert14 .*schema 2.*upgrade bert14"):
        Classifier.load(copy, provider="cpu")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.pop("model"), "expected a 'model' table"),
        (lambda raw: raw["model"].pop("vocab_size"), "lacks a field"),
        (lambda raw: raw.update(schema_version="one"), "expected an integer schema_version"),
        (lambda raw: (raw.pop("format"), raw.pop("bert14_version")), "expected a bert14 manifest"),
    ],
    ids=["no-model", "model-field", "version-type", "not-ours"],
)
def test_a_malformed_manifest_is_an_artifact_error(tiny_artifact: Path, tmp_path: Path, change, message) -> None:
    copy = _copy_with(tiny_artifact, tmp_path, change)
    with pytest.raises(ArtifactError, match=message):
        read_manifest(copy)


def test_the_manifest_names_the_family_and_the_runtime_feeds_its_inputs(
    tiny_artifact: Path, tmp_path: Path, monkeypatch
) -> None:
    """The family (bert14/family.py) is declared once: the export records it, and the runtime feeds the
    inputs it names, read back from the manifest."""
    import dataclasses

    import numpy as np

    from bert14 import family as families

    model = read_manifest(tiny_artifact).model
    assert (model.model_type, model.architecture) == ("bert", "BertForSequenceClassification")
    assert model.family is families.BERT
    # An earlier manifest, without model_type, reads as BERT.
    older = _copy_with(tiny_artifact, tmp_path / "older", lambda raw: raw["model"].pop("model_type"))
    assert read_manifest(older).model.family is families.BERT
    # A family this bert14 does not run is refused on load, not half-run.
    other = _copy_with(tiny_artifact, tmp_path / "other", lambda raw: raw["model"].update(model_type="gpt2"))
    with pytest.raises(ArtifactError, match="model_type 'gpt2' is not one this bert14 runs"):
        read_manifest(other)

    seen: list[list[str]] = []

    class Recording:
        """Stands in for the session: records the feeds it is given, answers zeros."""

        def run(self, names, feeds):
            seen.append(sorted(feeds))
            return [np.zeros((len(feeds["input_ids"]), 14), dtype=np.float32)]

    clf = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", warmup=False)
    clf._session = Recording()
    clf.predict(["央行宣布降准"])
    assert seen == [sorted(families.BERT.input_names)]
    # A family without token types gets two feeds, no more.
    two = dataclasses.replace(families.BERT, input_names=("input_ids", "attention_mask"))
    monkeypatch.setitem(families.FAMILIES, "bert", two)
    clf.predict(["北京"])
    assert seen[-1] == ["attention_mask", "input_ids"]


def test_a_familys_tokenizer_and_support_files_come_from_its_declaration(
    tiny_artifact: Path, tmp_path: Path, monkeypatch
) -> None:
    """The runtime reads the tokenizer through the reader of the family's tokenizer kind and verifies the
    files the family declares; a kind without a reader is one ArtifactError, not a wrong tokenization."""
    import dataclasses
    import shutil

    from bert14 import family as families
    from bert14.artifact import ARTIFACT_FILE_NAMES
    from bert14.tokenizer import READERS, load_tokenizer

    assert set(families.BERT.support_files) <= ARTIFACT_FILE_NAMES and "WordPiece" in READERS
    word_level = dataclasses.replace(families.BERT, tokenizer="WordLevel")
    with pytest.raises(ArtifactError, match="no reader for bert's WordLevel tokenizer"):
        load_tokenizer(tiny_artifact, word_level)
    monkeypatch.setitem(families.FAMILIES, "bert", word_level)
    with pytest.raises(ArtifactError, match="no reader for bert's WordLevel tokenizer"):
        Classifier.load(tiny_artifact, provider="cpu", warmup=False)
    # A reader of another kind refuses BERT's tokenizer.json in one line naming what it found.
    unigram = dataclasses.replace(families.BERT, tokenizer="Unigram")
    with pytest.raises(ArtifactError, match=r"expected a Unigram tokenizer .*found model/pre-tokenizer \('WordPiece'"):
        load_tokenizer(tiny_artifact, unigram)
    # A support file the family declares is verified like the model: a changed config.json stops the load.
    monkeypatch.setitem(families.FAMILIES, "bert", families.BERT)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ", encoding="utf-8")
    with pytest.raises(ArtifactError, match="config.json"):
        Classifier.load(copy, provider="cpu", warmup=False)


def test_an_artifact_entry_writes_its_set_fields_in_the_manifests_order(tiny_artifact: Path) -> None:
    from bert14.artifact import ArtifactEntry

    entry = ArtifactEntry("model.int8.onnx", provider="cpu", kept_fp32=[], validation={"passed": True})
    assert list(entry.to_manifest()) == ["file", "provider", "kept_fp32", "validation"]  # None left out, [] kept
    # What the export wrote reads back into the typed entry, key for key and in order.
    for key, written in read_manifest(tiny_artifact).artifacts.items():
        again = ArtifactEntry(**written).to_manifest()
        assert again == written and list(again) == list(written), key


def _set_model(**fields):
    return lambda raw: raw["model"].update(fields)


# Each was an internal error (exit 1) or read silently wrong: "abc" as three labels, max_tokens 0 as no limit.
DAMAGED_MANIFESTS = [
    (_set_model(max_tokens="64"), "expected model.max_tokens a whole number from 1"),
    (_set_model(max_tokens=-5), "expected model.max_tokens a whole number from 1"),
    (_set_model(max_tokens=0), "expected model.max_tokens a whole number from 1"),
    (_set_model(max_tokens=100_000), "expected model.max_tokens at most max_position_embeddings (512)"),
    (_set_model(labels="abc"), "expected model.labels a non-empty list of strings, found 'abc'"),
    (_set_model(labels=["A"] * 14), "expected model.labels each named once"),
    (_set_model(model_type=["bert"]), "expected model.model_type a string, found ['bert']"),
    (_set_model(hidden_size=3.5), "expected model.hidden_size a whole number"),
    (_set_model(layer_norm_eps="x"), "expected model.layer_norm_eps a number between 0 and 1"),
    (_set_model(problem_type=7), "expected model.problem_type a string or null"),
    (lambda raw: raw["files"].update({"config.json": 123}), "expected the sha256 of config.json in 'files'"),
    (lambda raw: raw.update(source=[1]), "expected 'source' a JSON object"),
    (lambda raw: raw.update(artifacts={"int8": "x"}), "expected each 'artifacts' entry a JSON object"),
]


@pytest.mark.parametrize(("change", "message"), DAMAGED_MANIFESTS)
def test_a_manifest_field_of_the_wrong_type_is_refused_naming_it(
    tiny_artifact: Path, tmp_path: Path, change, message: str
) -> None:
    copy = _copy_with(tiny_artifact, tmp_path, change)
    with pytest.raises(ArtifactError) as refused:
        Classifier.load(copy, precision="fp32", provider="cpu")
    assert message in str(refused.value) and "manifest.json" in str(refused.value)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"schema_version": ' + "9" * 5000 + "}"],
                         ids=["100k-deep", "5000-digit"])  # fmt: skip
def test_a_manifest_json_cannot_parse_is_an_artifact_error(tiny_artifact: Path, tmp_path: Path, text: str) -> None:
    copy = shutil.copytree(tiny_artifact, tmp_path / "copy")
    (copy / "manifest.json").write_text(text)
    with pytest.raises(ArtifactError, match="manifest.json: expected a bert14 manifest in JSON"):
        read_manifest(copy)


def test_labels_that_do_not_match_the_models_outputs_are_refused_at_load(tiny_artifact: Path, tmp_path: Path) -> None:
    copy = _copy_with(tiny_artifact, tmp_path, lambda raw: raw["model"]["labels"].append("extra"))
    with pytest.raises(ArtifactError, match="the model gives 14 scores per text, the manifest names 15 labels"):
        Classifier.load(copy, precision="fp32", provider="cpu")


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "sub/model.onnx", "..", ".hidden"])
def test_a_manifest_cannot_name_a_file_outside_the_artifact(tiny_artifact: Path, tmp_path: Path, name: str) -> None:
    import subprocess
    import sys

    copy = _copy_with(tiny_artifact, tmp_path, lambda raw: raw["files"].update({name: "0" * 64}))
    with pytest.raises(ArtifactError, match="expected 'files' to name files in the artifact directory"):
        read_manifest(copy)
    cli = str(Path(sys.executable).parent / "bert14")
    done = subprocess.run([cli, "check", str(copy)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 6 and "passwd" not in done.stdout, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "expected 'files' to name files" in done.stderr


def test_a_tampered_default_source_shape_is_refused_before_building(tiny_artifact: Path, tmp_path: Path) -> None:
    from bert14.export.model import rebuild

    copy = _copy_with(tiny_artifact, tmp_path, lambda raw: raw["source"]["shape"].update(hidden_size=10**6))
    with pytest.raises(ArtifactError, match="expected hidden_size from 1 to 768, found 1000000"):
        rebuild(read_manifest(copy).source, "sdpa")
