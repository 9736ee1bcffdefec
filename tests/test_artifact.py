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
