"""Nothing leaves the machine, and no telemetry lands on it: export (OpenVINO INT8 included), check,
predict on both engines and a served request, each in a fresh process with a fresh HOME and every
outgoing connection refused (tests/privacy_guard.py). Not in pytest's own process: NNCF switches its
telemetry off by itself when pytest is imported, which would hide what a user's run does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_SHAPE, free_port

GUARD = str(Path(__file__).with_name("privacy_guard.py"))
COLLECTOR_VARIABLES = ("ORT_DISABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED", "NNCF_CI",
                       "NNCF_DEV", "CI", "TF_BUILD", "JENKINS_URL", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")  # fmt: skip


def _environment(home: Path) -> dict[str, str]:
    """A user's shell: a fresh HOME, none of the switches set (the switches are bert14's to set)."""
    env = {k: v for k, v in os.environ.items() if k not in COLLECTOR_VARIABLES and not k.startswith("PYTEST")}
    return env | {"HOME": str(home)}


def _guarded(code: str, home: Path, log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, GUARD, str(log), code], env=_environment(home), **kwargs)


def _run(code: str, home: Path, log: Path) -> None:
    process = _guarded(code, home, log, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out[-2000:] + err[-2000:]


def test_no_connection_and_no_telemetry_file_from_export_check_predict_serve(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    httpx = pytest.importorskip("httpx")
    home, log, art = tmp_path / "home", tmp_path / "connections.log", tmp_path / "art"
    home.mkdir()
    log.touch()
    export = (f"from bert14.commands.build import ExportOptions, export_artifact\n"
              f"export_artifact(ExportOptions(out_dir={str(art)!r}, shape_overrides={dict(TINY_SHAPE)!r}))")
    _run(export, home, log)
    assert (art / "model.int8.ov.xml").is_file(), "the OpenVINO build (NNCF, the converter) ran"
    cli = "import sys\nfrom bert14.commands.cli import main\nsys.exit(main({argv!r}))"
    _run(cli.format(argv=["check", str(art)]), home, log)
    for engine in ("onnxruntime", "openvino"):
        _run(cli.format(argv=["predict", str(art), "--engine", engine, "湖人主场险胜勇士"]), home, log)
    port = free_port()
    server = _guarded(cli.format(argv=["serve", str(art), "--port", str(port), "--engine", "openvino"]), home, log,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert "serving" in server.stdout.readline()
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"texts": ["央行宣布降准"]}, timeout=60)
        assert reply.status_code == 200
    finally:
        server.terminate()
        started = time.monotonic()
        server.wait(timeout=60)
    assert time.monotonic() - started < 30, "the server's exit was held up"
    assert log.read_text() == "", f"connections beyond this machine were attempted:\n{log.read_text()}"
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"files written under a fresh HOME: {written}"
