"""Hostile and careless use of the command line: every failure one line and a documented exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bert14.commands.cli import main
from bert14.errors import ArtifactError, InputError
from bert14.runtime import Classifier

CLI = str(Path(sys.executable).parent / "bert14")


def _one_line(err: str) -> str:
    assert err.strip().count("\n") == 0, f"expected a one-line error, got:\n{err}"
    assert "Traceback" not in err
    return err.strip()


def test_undecodable_argument_is_an_input_error_naming_the_index(tiny_artifact: Path) -> None:
    # sys.argv holds bytes that are not UTF-8 as lone surrogates (surrogateescape).
    result = subprocess.run([CLI, "predict", str(tiny_artifact), "好", b"abc\xff"], capture_output=True)
    assert result.returncode == 2
    err = _one_line(result.stderr.decode())
    assert "texts[1]" in err and "U+DCFF" in err and "not UTF-8" in err


def test_lone_surrogate_through_the_api_is_an_input_error(tiny_artifact: Path) -> None:
    clf = Classifier.load(tiny_artifact, precision="fp32", provider="cpu", threads=1)
    with pytest.raises(InputError, match=r"texts\[1\].*U\+D800"):
        clf.predict(["ok", "bad\ud800"])
    with pytest.raises(InputError, match=r"text_pairs\[0\]"):
        clf.predict(["ok"], ["\udfff"])


def test_options_after_texts_and_texts_after_double_dash(tiny_artifact: Path, capsys) -> None:
    argv = ["predict", str(tiny_artifact), "湖人", "--threads", "1", "--provider", "cpu", "--", "-5度", "--x"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().split("\n")]
    assert [r["text"] for r in rows] == ["湖人", "-5度", "--x"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "0"], "threads: expected a whole number from 1"),
        (["--threads", "-3"], "threads: expected a whole number from 1"),
        (["--threads", "10000"], "threads: expected a whole number from 1"),
        (["--batch-size", "0"], "max_batch: expected a whole number from 1"),
        (["--threshold", "1.5"], "threshold between 0 and 1"),
    ],
)
def test_absurd_runtime_options_are_refused_with_a_message(tiny_artifact: Path, capsys, flags, message) -> None:
    assert main(["predict", str(tiny_artifact), "湖人", *flags]) == 2
    assert message in _one_line(capsys.readouterr().err)


def test_load_options_validate_through_the_api(tiny_artifact: Path) -> None:
    with pytest.raises(InputError, match="max_tokens"):
        Classifier.load(tiny_artifact, max_tokens=0)
    with pytest.raises(InputError, match="threads"):
        Classifier.load(tiny_artifact, threads=True)


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_serve_refuses_a_port_out_of_range(tiny_artifact: Path, capsys, port: str) -> None:
    pytest.importorskip("uvicorn")
    assert main(["serve", str(tiny_artifact), "--port", port]) == 2
    assert "port: expected a whole number from 1 to 65535" in _one_line(capsys.readouterr().err)


def test_serve_on_a_port_in_use_fails_before_announcing(tiny_artifact: Path) -> None:
    pytest.importorskip("uvicorn")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [CLI, "serve", str(tiny_artifact), "--port", str(port), "--provider", "cpu"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 8
    assert "serving at" not in result.stdout
    assert f"127.0.0.1:{port}" in _one_line(result.stderr) and "in use" in result.stderr


def test_optimize_on_a_file_that_is_not_onnx(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    assert main(["optimize", str(junk), str(tmp_path / "out.onnx")]) == 2
    assert "expected an ONNX model file, could not parse it" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out.onnx").exists()


def test_a_closed_output_pipe_ends_quietly(tiny_artifact: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"第{i}条新闻" for i in range(5000)) + "\n", encoding="utf-8")
    command = f"'{CLI}' predict '{tiny_artifact}' --provider cpu --quiet --file '{texts}' | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    assert result.stdout.count("\n") == 1 and json.loads(result.stdout)["text"] == "第0条新闻"
    assert result.stderr == "", "a closed pipe is not an error to report"
    assert result.returncode == 141


def test_every_changed_file_fails_the_load_and_the_check(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    for name in ("tokenizer.json", "config.json"):
        copy = tmp_path / name
        shutil.copytree(tiny_artifact, copy)
        with (copy / name).open("a", encoding="utf-8") as handle:
            handle.write("\n")  # another model's file would differ far more
        with pytest.raises(ArtifactError, match=f"{name}: sha256 .* does not match"):
            Classifier.load(copy, provider="cpu")
        assert main(["check", str(copy)]) == 6
        assert f"{name}: sha256" in _one_line(capsys.readouterr().err)


def test_an_internal_error_is_one_line_with_exit_1(tiny_artifact: Path, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("planted bug\nsecond line")

    monkeypatch.setattr(Classifier, "predict", broken)
    monkeypatch.delenv("BERT14_TRACEBACK", raising=False)
    assert main(["predict", str(tiny_artifact), "湖人", "--provider", "cpu"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert "internal error: RuntimeError: planted bug" in err and "BERT14_TRACEBACK" in err


def test_sigterm_is_exit_143_and_one_line(tiny_artifact: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from bert14.commands import cli\n"
        "def waits(args):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    raise AssertionError('SIGTERM did not interrupt')\n"
        "cli._predict = waits\n"
        f"sys.exit(cli.main(['predict', {str(tiny_artifact)!r}, 'x']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 143 and "terminated (SIGTERM)" in _one_line(result.stderr)


@pytest.mark.parametrize(
    "argv",
    [["predict"], ["predict", "ART", "x", "--bogus"], ["nocommand"], ["serve", "ART", "--port", "x"],
     ["predict", "ART", "x", "--precision", "int4"]],
)  # fmt: skip
def test_a_usage_error_is_one_line_with_exit_2(tiny_artifact: Path, argv: list[str]) -> None:
    argv = [str(tiny_artifact) if a == "ART" else a for a in argv]
    result = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    err = _one_line(result.stderr)
    assert "error:" in err and "--help" in err, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--stride", "5"], "--stride applies to --long-text windows, not truncate"),
        (["--long-text", "head_tail", "--max-windows", "3"],
         "--max-windows applies to --long-text windows, not head_tail"),
        (["--long-text", "windows", "--head-tokens", "3"],
         "--head-tokens applies to --long-text head_tail, not windows"),
        (["--pool", "max"], "--pool applies to --long-text windows"),
    ],
)  # fmt: skip
def test_a_long_text_flag_without_its_strategy_is_refused_not_ignored(
    tiny_artifact: Path, flags: list[str], message: str
) -> None:
    for command in (["predict", str(tiny_artifact), "体育"], ["check", str(tiny_artifact)]):
        result = subprocess.run([CLI, *command, *flags], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stdout == "", result.stdout
        assert message in _one_line(result.stderr)


def test_a_missing_file_beside_texts_answers_nothing(tiny_artifact: Path, tmp_path: Path) -> None:
    result = subprocess.run([CLI, "predict", str(tiny_artifact), "体育", "--file", str(tmp_path / "missing.txt")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and result.stdout == "", "nothing half done: no prediction before the error"
    assert "missing.txt: expected a text file" in _one_line(result.stderr)


def test_advice_names_the_flag_as_the_cli_spells_it(tiny_artifact: Path) -> None:
    result = subprocess.run([CLI, "predict", str(tiny_artifact), "x", "--engine", "openvino", "--precision", "fp32"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "--engine onnxruntime" in _one_line(result.stderr)


def test_a_missing_special_token_names_the_vocabulary_file(tmp_path: Path) -> None:
    from conftest import TRAINED_MODEL, need

    from bert14.export.model import load_checkpoint

    checkpoint = shutil.copytree(need(TRAINED_MODEL), tmp_path / "ck")
    config = checkpoint / "tokenizer_config.json"
    raw = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    config.write_text(json.dumps({**raw, "unk_token": "[NOPE]"}), encoding="utf-8")
    with pytest.raises(InputError) as refused:
        load_checkpoint(checkpoint)
    message = str(refused.value)
    assert "vocab.txt: expected the special token '[NOPE]' (unk_token, from tokenizer_config.json" in message
