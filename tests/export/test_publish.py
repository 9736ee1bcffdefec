"""Export never loses what it did not write: OUT's other files, foreign manifests, mount points,
read-only targets, interrupted and killed exports (bert14/publish.py)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import TINY_SHAPE

from bert14.artifact import read_manifest, write_manifest
from bert14.commands.build import ExportOptions, export_artifact
from bert14.errors import InputError
from bert14.publish import JOURNAL_NAME, STAGE_MARKER, STAGE_PREFIX, staging

MODEL_TABLE = {
    "labels": ["a", "b"],
    "vocab_size": 100,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


def _fake_export(out: Path, names: tuple[str, ...] = ("model.onnx", "config.json"), content: str = "new") -> None:
    """What export_artifact does to OUT, without the model: stage files, a manifest, publish."""
    with staging(out) as stage:
        for name in names:
            (stage / name).write_text(content)
        write_manifest(stage, {"bert14_version": "test", "model": MODEL_TABLE})


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_foreign_manifest_does_not_make_out_ours(tmp_path: Path) -> None:
    out = tmp_path / "project"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "someone else\'s package", "version": 3}')
    (out / "model.onnx").write_text("their model")
    (out / "data.csv").write_text("a,b\n")
    before = _tree(out)
    with pytest.raises(InputError, match="no bert14 manifest"):
        _fake_export(out)
    assert _tree(out) == before


def test_files_beside_an_earlier_artifact_survive_a_re_export(tmp_path: Path) -> None:
    out = tmp_path / "art"
    _fake_export(out, content="first")
    (out / "notes.md").write_text("my notes")
    (out / "eval").mkdir()
    (out / "eval" / "scores.json").write_text("{}")
    _fake_export(out, content="second")
    assert (out / "notes.md").read_text() == "my notes"
    assert (out / "eval" / "scores.json").read_text() == "{}"
    assert (out / "model.onnx").read_text() == "second"
    assert set(read_manifest(out).files) == {"model.onnx", "config.json"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no stage or journal left behind"


def test_files_the_new_artifact_lacks_are_removed_only_when_they_were_ours(tmp_path: Path) -> None:
    out = tmp_path / "art"
    _fake_export(out, names=("model.onnx", "config.json", "model.int8.onnx"))
    _fake_export(out, names=("model.onnx", "config.json"))
    assert not (out / "model.int8.onnx").exists(), "the old artifact's own file goes with it"
    (out / "model.int8.onnx").write_text("the user's own int8 model")
    with pytest.raises(InputError, match="model.int8.onnx would be overwritten"):
        _fake_export(out, names=("model.onnx", "config.json", "model.int8.onnx"))
    assert (out / "model.int8.onnx").read_text() == "the user's own int8 model"


def test_stale_stage_of_a_killed_export_is_removed_and_a_look_alike_is_not(tmp_path: Path) -> None:
    out = tmp_path / "art"
    _fake_export(out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f"{STAGE_PREFIX}{dead.stdout.strip()}-abc"
    stale.mkdir()
    (stale / STAGE_MARKER).write_text("")
    (stale / "model.onnx").write_bytes(b"\0" * 1000)
    look_alike = out / f"{STAGE_PREFIX}1-mine"  # no marker: not bert14's
    look_alike.mkdir()
    (look_alike / "keep.txt").write_text("keep")
    _fake_export(out)
    assert not stale.exists()
    assert (look_alike / "keep.txt").read_text() == "keep"


def test_a_publish_cut_short_is_recognised_by_the_next_export(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "art"
    _fake_export(out, names=("model.onnx", "config.json"))
    real_replace = os.replace

    def dies_at_the_manifest(src, dst):
        if Path(dst).name == "manifest.json":
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_at_the_manifest)
    with pytest.raises(OSError):
        _fake_export(out, names=("model.onnx", "config.json", "model.int8.onnx"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert (out / JOURNAL_NAME).is_file() and (out / "model.int8.onnx").is_file()
    _fake_export(out, names=("model.onnx", "config.json"))  # the journal says model.int8.onnx was ours
    assert not (out / "model.int8.onnx").exists() and not (out / JOURNAL_NAME).exists()


def test_a_second_export_to_the_same_out_is_refused_while_one_runs(tmp_path: Path) -> None:
    out = tmp_path / "art"
    _fake_export(out)
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(InputError, match="another bert14 export is writing"):
            _fake_export(out, content="second")
    finally:
        os.close(fd)
    assert (out / "model.onnx").read_text() == "new"


@contextmanager
def _tmpfs(path: Path, read_only: bool, size: str = "64m") -> Iterator[Path]:
    path.mkdir()
    options = "ro,size=1m" if read_only else f"size={size}"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); needs root in a mount namespace")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_export_into_a_mount_point_publishes_into_it(tmp_path: Path) -> None:
    # A container volume: renaming a directory over it fails with EBUSY.
    with _tmpfs(tmp_path / "volume", read_only=False) as volume:
        export_artifact(ExportOptions(out_dir=volume, optimize=False, shape_overrides=dict(TINY_SHAPE)))
        assert set(read_manifest(volume).files) == {
            "model.onnx",
            "config.json",
            "vocab.txt",
            "tokenizer.json",
            "tokenizer_config.json",
        }


def test_read_only_out_is_refused_before_the_work(tmp_path: Path, monkeypatch) -> None:
    import bert14.commands.build as pipeline

    def must_not_run(options):
        raise AssertionError("the model was loaded before OUT was found unwritable")

    monkeypatch.setattr(pipeline, "load_source", must_not_run)
    with _tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(InputError, match="cannot write the artifact there .*Read-only file system"):
            export_artifact(ExportOptions(out_dir=ro / "art", shape_overrides=dict(TINY_SHAPE)))
        with pytest.raises(InputError, match="cannot write the artifact there"):
            export_artifact(ExportOptions(out_dir=ro, shape_overrides=dict(TINY_SHAPE)))


def test_sigterm_during_export_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "art"
    cli = Path(sys.executable).parent / "bert14"
    process = subprocess.Popen(
        [str(cli), "export", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and any(out.glob(f"{STAGE_PREFIX}*"))):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)
    time.sleep(1.0)  # into the work: the stage is there, the default model is loading
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().count("\n") == 0 and "terminated" in err
    assert not out.exists(), "the export created OUT, so the interrupted export removes it"
    assert list(tmp_path.iterdir()) == []


def test_export_reports_its_stages_and_case_progress(tmp_path: Path) -> None:
    from bert14 import progress

    seen: list[tuple[str, int, int]] = []
    with progress.reporting(lambda text, done, total: seen.append((text, done, total))):
        export_artifact(ExportOptions(out_dir=tmp_path / "art", optimize=False, shape_overrides=dict(TINY_SHAPE)))
    stages = [text for text, done, total in seen if total == 0]
    assert stages[0] == "loading the source model" and stages[-1].startswith("publishing into")
    assert any(s.startswith("checking model.onnx against PyTorch (12 cases)") for s in stages)
    steps = [(done, total) for text, done, total in seen if text.startswith("checking model.onnx") and total]
    assert steps == [(i, 12) for i in range(1, 13)]


def test_nothing_beside_out_is_ever_removed_even_named_like_an_old_stage(tmp_path: Path) -> None:
    # Before 2026-11-27 export staged in `.OUT.partial-XXXXXXXX` beside OUT and removed such directories
    # holding only artifact file names; a user's directory of that name (config.json is anyone's) was lost.
    beside = tmp_path / ".art.partial-abcdefgh"
    beside.mkdir()
    (beside / "config.json").write_text('{"mine": true}')
    (beside / "model.onnx").write_bytes(b"\0" * 1000)
    other = tmp_path / ".art.partial-zz99zz99"
    other.mkdir()
    (other / "thesis.tex").write_text("not an artifact file")
    _fake_export(tmp_path / "art")
    assert (beside / "config.json").read_text() == '{"mine": true}'
    assert (beside / "model.onnx").stat().st_size == 1000
    assert (other / "thesis.tex").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".art.partial-abcdefgh", ".art.partial-zz99zz99", "art"]


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", read_only=False, size="1m") as small:
        options = f"out_dir={str(small / 'art')!r}, shape_overrides={dict(TINY_SHAPE)!r}"
        code = (
            "import sys\nfrom bert14.commands import cli\n"
            "from bert14.commands.build import export_artifact, ExportOptions\n"
            f"def tiny(args):\n    export_artifact(ExportOptions({options}))\n"
            "cli._export = tiny\n"
            "sys.exit(cli.main(['export']))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert result.returncode == 10, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "No space left on device" in result.stderr
        assert list(small.iterdir()) == [], "the stage and the OUT export created are gone"


def test_a_second_job_into_a_new_directory_is_told_another_is_writing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    started = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(60)"])
    try:  # what the first job leaves while it runs: OUT, just created, holding only its live stage
        out.mkdir()
        stage = out / f"{STAGE_PREFIX}{started.pid}-abcd1234"
        stage.mkdir()
        (stage / STAGE_MARKER).write_text("a bert14 export in progress\n")
        with pytest.raises(InputError, match="another bert14 export is writing this directory"):
            _fake_export(out)
    finally:
        started.kill()
        started.wait()
    _fake_export(out)  # once that process is gone its stage is stale, and removed
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "manifest.json", "model.onnx"]
