from __future__ import annotations

import json
from pathlib import Path

from bert14.commands.cli import main


def test_predict_texts_prints_json_lines(tiny_artifact: Path, capsys) -> None:
    assert main(["predict", str(tiny_artifact), "央行宣布降准", "湖人队获胜", "--provider", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    rows = [json.loads(line) for line in lines]
    assert [r["text"] for r in rows] == ["央行宣布降准", "湖人队获胜"]
    assert all(set(r) == {"text", "label", "score", "probs", "labels", "truncated", "tokens", "windows"} for r in rows)
    assert all(r["labels"] == [r["label"]] for r in rows), "single-label: the top label is the one that applies"


def _stderr_on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) with stderr a pseudo-terminal, as a person at a shell has it."""
    import os
    import subprocess
    import sys

    primary, secondary = os.openpty()
    cli = str(Path(sys.executable).parent / "bert14")
    result = subprocess.run([cli, *argv], stdout=subprocess.PIPE, stderr=secondary, timeout=300)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    return result.returncode, result.stdout.decode(), b"".join(chunks).decode()


def test_predict_file_keeps_line_order_and_shows_progress_on_a_terminal(
    tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    texts = [f"第{i}条" + "新闻" * (i % 7) for i in range(2500)] + [""]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["predict", str(tiny_artifact), "--file", str(path), "--provider", "cpu"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.strip().split("\n")]
    assert [r["text"] for r in rows] == texts
    assert captured.err == "", "no progress bar when stderr is not a terminal (a pipe, a log)"
    argv = ["predict", str(tiny_artifact), "--file", str(path), "--provider", "cpu"]
    code, out, err = _stderr_on_a_terminal(argv)
    assert code == 0 and len(out.splitlines()) == 2501
    assert "classifying 2501 lines" in err and "2501/2501" in err
    code, out, err = _stderr_on_a_terminal([*argv, "--quiet"])
    assert code == 0 and err == ""


def test_predict_exit_codes(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes("好的\n".encode() + b"\xff\xfe broken\n")
    assert main(["predict", str(tiny_artifact), "--file", str(bad), "--provider", "cpu"]) == 2
    assert "bad.txt:2: expected UTF-8 text" in capsys.readouterr().err
    assert main(["predict", str(tiny_artifact)]) == 2
    assert main(["predict", str(tmp_path / "missing"), "text"]) == 6
    assert "expected an artifact directory" in capsys.readouterr().err


def test_example_application_runs(tiny_artifact: Path) -> None:
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "embed.py"
    result = subprocess.run([sys.executable, str(example), str(tiny_artifact)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout and "央行宣布降准0.5个百分点" in result.stdout


def test_predict_reads_standard_input_with_dash(tiny_artifact: Path) -> None:
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "bert14")
    result = subprocess.run(
        [cli, "predict", str(tiny_artifact), "--file", "-", "--provider", "cpu"],
        input="央行宣布降准\n湖人队获胜\n".encode(),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.decode().splitlines()] == ["央行宣布降准", "湖人队获胜"]
    argv = [cli, "predict", str(tiny_artifact), "--file", "-", "--provider", "cpu"]
    bad = subprocess.run(argv, input=b"ok\n\xff\n", capture_output=True, timeout=120)
    assert bad.returncode == 2 and b"-:2: expected UTF-8 text" in bad.stderr
