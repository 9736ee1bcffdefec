"""The GPU check's logic, run on the CPU provider (CI has no GPU); both GPU scripts without a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_profile  # noqa: E402
import pytest  # noqa: E402


def test_gpu_check_logic_on_the_cpu_provider(tiny_artifact: Path, capsys) -> None:
    report = gpu_check.check(tiny_artifact, "cpu", rounds=2, shapes=((1, 16), (2, 32)), public=False)
    assert set(report["parity"]) == {"fp32", "fp32_fused", "fp16", "fp16_seqlen", "int8", "int8_openvino"}
    assert all(p["passed"] for p in report["parity"].values())
    assert report["parity"]["fp32_fused"]["max_abs_logit_diff"] < 1e-4
    assert set(report["latency_ms"]) == {"1x16", "2x32"}
    assert set(report["latency_ms"]["1x16"]) == {"bert14 fp32", "bert14 fp16"}
    gpu_check.print_report(report)
    assert "fp16_seqlen" in capsys.readouterr().out


@pytest.mark.parametrize("script", [gpu_check, gpu_profile], ids=["gpu_check", "gpu_profile"])
def test_without_a_gpu_it_says_so_and_exits_cleanly(tiny_artifact: Path, monkeypatch, capsys, script) -> None:
    monkeypatch.setattr(script, "cuda_available", lambda: False)
    monkeypatch.setattr(sys, "argv", [f"{script.__name__}.py", str(tiny_artifact)])
    assert script.main() == 0
    assert "no NVIDIA GPU" in capsys.readouterr().out
