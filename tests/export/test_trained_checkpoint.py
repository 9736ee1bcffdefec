"""A trained checkpoint exported with no flags, as the README's own-checkpoint command does: every file it
publishes passes its gate, and the OpenVINO model it cannot calibrate is skipped in one line, on record."""

from __future__ import annotations

from pathlib import Path

import pytest

from bert14.artifact import OPENVINO_INT8_FILE, read_manifest
from bert14.errors import ArtifactError


def test_a_trained_checkpoint_exports_with_no_flags(trained_artifact: Path) -> None:
    stdout = (trained_artifact.parent / "export.stdout").read_text(encoding="utf-8")
    notes = [line for line in stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "--calibration FILE" in notes[0] and OPENVINO_INT8_FILE in notes[0]
    manifest = read_manifest(trained_artifact)
    assert OPENVINO_INT8_FILE not in manifest.files and "int8_openvino" not in manifest.artifacts
    assert "--calibration FILE" in manifest.raw["skipped"]["int8_openvino"]
    for key in ("fp32", "fp32_fused", "int8"):
        assert manifest.artifacts[key]["validation"]["passed"], key


def test_the_openvino_engine_on_it_says_how_to_build_the_model(trained_artifact: Path) -> None:
    from bert14.runtime import Classifier

    pytest.importorskip("openvino")
    with pytest.raises(ArtifactError, match="without --calibration FILE"):
        Classifier.load(trained_artifact, engine="openvino")
    assert Classifier.load(trained_artifact, threads=1).engine == "onnxruntime"
