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
