from __future__ import annotations

import subprocess
import sys


def test_runtime_imports_without_torch_or_transformers() -> None:
    code = (
        "import sys, bert14.runtime, bert14.runtime.tokenizer, bert14.manifest; "
        "heavy = [m for m in ('torch', 'transformers', 'onnx', 'onnxscript') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_console_command_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "bert14.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "export" in result.stdout
