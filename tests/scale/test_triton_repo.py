"""`bert14 triton-repo`: every config.pbtxt parses as Triton's ModelConfig, and the repository's
Python models, run as Triton would run them (a stand-in for triton_python_backend_utils), give what
bert14's runtime gives. tritonserver itself is not installable here (NVIDIA's containers only)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from triton_stub import Tensor as _Tensor
from triton_stub import install_pb_utils
from triton_stub import load_model as _model

from bert14.errors import InputError
from bert14.head import scores
from bert14.runtime import Classifier
from bert14.scale.triton import MODEL, POSTPROCESS, TOKENIZE, RepoOptions, write_repo

TEXTS = ["湖人主场险胜勇士", "央行宣布降准0.5个百分点", "A [SEP] b", "", "高考作文题目公布" * 40]


def _parse(path: Path):
    pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] ships ModelConfig")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(encoding="utf-8"), pb2.ModelConfig())


@pytest.fixture()
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    return install_pb_utils(monkeypatch)


def _texts(values: list[str]) -> _Tensor:
    return _Tensor("text", np.array([[v.encode("utf-8")] for v in values], dtype=object))  # (N, 1)


def test_every_config_parses_as_tritons_model_config(tiny_artifact: Path, tmp_path: Path) -> None:
    files = write_repo(tiny_artifact, tmp_path / "repo")
    configs = {p.parent.name: _parse(p) for p in files if p.name == "config.pbtxt"}
    assert set(configs) == {"bert14", TOKENIZE, MODEL, POSTPROCESS}
    ensemble = configs["bert14"]
    assert ensemble.platform == "ensemble"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [TOKENIZE, MODEL, POSTPROCESS]
    model = configs[MODEL]
    assert model.backend == "onnxruntime" and model.max_batch_size == 64
    assert list(model.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert model.instance_group[0].kind == model.instance_group[0].KIND_CPU
    assert model.parameters["intra_op_thread_count"].string_value == "2"
    manifest_labels = Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1).labels
    assert (tmp_path / "repo" / MODEL / "labels.txt").read_text(encoding="utf-8").split("\n")[:-1] == manifest_labels
    assert (tmp_path / "repo" / MODEL / "1" / "model.onnx").read_bytes() == (
        tiny_artifact / "model.int8.onnx"
    ).read_bytes()
    gpu = write_repo(tiny_artifact, tmp_path / "gpu", RepoOptions(device="gpu", instances=2))
    gpu_model = _parse(next(p for p in gpu if p.parent.name == MODEL and p.name == "config.pbtxt"))
    assert gpu_model.instance_group[0].kind == gpu_model.instance_group[0].KIND_GPU
    assert gpu_model.instance_group[0].count == 2 and "intra_op_thread_count" not in gpu_model.parameters
    onnx = tmp_path / "gpu" / MODEL / "1" / "model.onnx"
    assert onnx.read_bytes() == (tiny_artifact / "model.fp16.onnx").read_bytes()


def test_the_tokenize_model_gives_the_runtimes_ids(tiny_artifact: Path, tmp_path: Path, pb_utils) -> None:
    write_repo(tiny_artifact, tmp_path / "repo")
    model = _model(tmp_path / "repo" / TOKENIZE / "1" / "model.py")
    clf = Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1)
    pairs = ["体育", "财经", "x", "y", "z"]
    for request_pairs in (None, pairs):
        request = {"text": _texts(TEXTS)}
        if request_pairs:
            request["text_pair"] = _Tensor("text_pair", np.array([[p.encode()] for p in pairs], dtype=object))
        (response,) = model.execute([request])
        expected = clf.encode(TEXTS, request_pairs)
        ids, mask, types_ = (response.outputs[n] for n in ("input_ids", "attention_mask", "token_type_ids"))
        longest = max(len(e.ids) for e in expected)
        width = min(b for b in (16, 32, 64, 128, 256, 512) if b >= longest)
        assert ids.dtype == np.int64 and ids.shape == (5, width), "padded to the bucket of the longest row"
        for row, e in enumerate(expected):
            n = len(e.ids)
            assert ids[row, :n].tolist() == list(e.ids) and mask[row].sum() == n
            assert types_[row, :n].tolist() == list(e.type_ids) and not ids[row, n:].any()
    (bad,) = model.execute([{"text": _Tensor("text", np.array([[b"\xff"]], dtype=object))}])
    assert bad.error and "text" in bad.error


def test_the_ensemble_path_answers_what_the_runtime_answers(tiny_artifact: Path, tmp_path: Path, pb_utils) -> None:
    import onnxruntime as ort

    write_repo(tiny_artifact, tmp_path / "repo")
    tokenize = _model(tmp_path / "repo" / TOKENIZE / "1" / "model.py")
    post = _model(tmp_path / "repo" / POSTPROCESS / "1" / "model.py")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tmp_path / "repo" / MODEL / "1" / "model.onnx"), options)
    (features,) = tokenize.execute([{"text": _texts(TEXTS)}])
    (logits,) = session.run(["logits"], features.outputs)
    (answer,) = post.execute([{"logits": _Tensor("logits", logits)}])
    clf = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1)
    np.testing.assert_allclose(answer.outputs["probs"], scores(logits, clf.score_function), rtol=1e-6)
    assert [v.decode() for v in answer.outputs["label"].reshape(-1)] == [
        clf.labels[i] for i in scores(logits, clf.score_function).argmax(-1)
    ]
    int8 = Classifier.load(tiny_artifact, precision="int8", provider="cpu", threads=1, max_batch=8)
    padded_alike = int8.logits(TEXTS)  # one batch, padded to its longest row: dynamic INT8 scales differ a little
    assert np.abs(padded_alike - logits).max() < 0.25, "within the INT8 tolerance of the runtime's own answer"


def test_other_models_in_the_repository_are_kept_and_a_foreign_namesake_refused(tiny_artifact, tmp_path) -> None:
    repo = tmp_path / "repo"
    (repo / "resnet" / "1").mkdir(parents=True)
    (repo / "resnet" / "config.pbtxt").write_text('name: "resnet"')
    write_repo(tiny_artifact, repo, RepoOptions(max_batch=8, preferred_batch=(4,)))
    write_repo(tiny_artifact, repo)  # replaces its own models
    assert "max_batch_size: 64" in (repo / MODEL / "config.pbtxt").read_text()
    assert (repo / "resnet" / "config.pbtxt").read_text() == 'name: "resnet"', "another model is left alone"
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        [".bert14-triton-repo.json", "bert14", MODEL, POSTPROCESS, TOKENIZE, "resnet"]
    ), "no stage or old copies left behind"
    write_repo(tiny_artifact, repo, RepoOptions(name="news"))  # the ensemble renamed: the old one was ours
    assert not (repo / "bert14").exists() and (repo / "news" / "config.pbtxt").is_file()
    (tmp_path / "theirs" / MODEL).mkdir(parents=True)
    (tmp_path / "theirs" / MODEL / "config.pbtxt").write_text("theirs")
    with pytest.raises(InputError, match=rf"\['{MODEL}'\] are there and not bert14's"):
        write_repo(tiny_artifact, tmp_path / "theirs")
    assert (tmp_path / "theirs" / MODEL / "config.pbtxt").read_text() == "theirs"
    with pytest.raises(InputError, match="preferred batch sizes"):
        RepoOptions(max_batch=8)


def test_cli_writes_the_repository(tiny_artifact: Path, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "bert14"
    done = subprocess.run([str(cli), "triton-repo", str(tiny_artifact), str(tmp_path / "repo"), "--threads", "1"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ensemble 'bert14'" in done.stdout
    assert 'string_value: "1"' in (tmp_path / "repo" / MODEL / "config.pbtxt").read_text()


@pytest.mark.parametrize("name", ["../evil", "/abs/path", "a/b", "..", ".", ".hidden", "-x", "a b", "é", "x" * 129, ""])
def test_a_name_that_is_not_one_safe_path_component_is_refused_before_writing(tiny_artifact, tmp_path, name) -> None:
    cli = Path(sys.executable).parent / "bert14"
    out = tmp_path / "repo"
    done = subprocess.run([str(cli), "triton-repo", str(tiny_artifact), str(out), f"--name={name}"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--name" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written, inside OUT or beside it"
    assert not Path("/abs/path").exists()


def test_out_as_a_dangling_symlink_gets_a_message(tiny_artifact: Path, tmp_path: Path) -> None:
    link = tmp_path / "repo"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(InputError, match="symbolic link to .*gone, which does not exist"):
        write_repo(tiny_artifact, link)
    assert link.is_symlink() and not (tmp_path / "gone").exists()
    write_repo(tiny_artifact, tmp_path / "ok", RepoOptions(name="news.v2_1-a"))  # Triton's characters are fine
    assert (tmp_path / "ok" / "news.v2_1-a" / "config.pbtxt").is_file()
