"""The GPU profile's plumbing on the CPU provider, and its arithmetic on a hand-made trace."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_profile  # noqa: E402


def test_summary_counts_device_work_per_run_and_ignores_host_events() -> None:
    runs = 2
    trace = [
        {"cat": "kernel", "name": "gemm_fp16_128x128", "dur": 6.0},
        {"cat": "kernel", "name": "gemm_fp16_128x128", "dur": 6.0},
        {"cat": "kernel", "name": "gemm_fp16_128x128", "dur": 6.0},
        {"cat": "kernel", "name": "gemm_fp16_128x128", "dur": 6.0},
        {"cat": "kernel", "name": "skip_layer_norm", "dur": 2.0},
        {"cat": "kernel", "name": "skip_layer_norm", "dur": 2.0},
        {"cat": "gpu_memcpy", "name": "Memcpy HtoD", "dur": 4.0},
        {"cat": "cpu_op", "name": "host side, not GPU work", "dur": 500.0},
        {"cat": "kernel", "name": "an instant event has no duration"},
    ]
    summary = gpu_profile.summarize(trace, runs, top=2)
    assert summary["kernels_per_run"] == 3  # 6 timed kernels over 2 runs; copies are not kernels
    assert summary["gpu_us_per_run"] == pytest.approx((24 + 4 + 4) / 2)
    assert [row["name"] for row in summary["by_name"]] == ["gemm_fp16_128x128", "skip_layer_norm"]
    gemm = summary["by_name"][0]
    assert gemm["count_per_run"] == 2 and gemm["us_per_run"] == 12 and gemm["share"] == pytest.approx(24 / 32)


def test_profile_plumbing_on_the_cpu_provider(tiny_artifact: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "profile.json"
    argv = ["gpu_profile.py", str(tiny_artifact), "--provider", "cpu", "--shapes", "1x16", "--runs", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--json", str(out)])
    assert gpu_profile.main() == 0
    report = json.loads(out.read_text())
    assert set(report) == {"model.fp16.seqlen.onnx 1x16", "model.fp16.onnx 1x16"}
    assert all(entry["kernels_per_run"] == 0 for entry in report.values()), "the CPU provider launches no kernels"
    assert "model.fp16.onnx at 1 x 16" in capsys.readouterr().out


@pytest.mark.parametrize("shapes", ["1by128", "1x128x2", "0x128", ""])
def test_bad_shapes_are_refused_with_the_expected_form(tiny_artifact: Path, monkeypatch, capsys, shapes: str) -> None:
    monkeypatch.setattr(sys, "argv", ["gpu_profile.py", str(tiny_artifact), "--shapes", shapes])
    with pytest.raises(SystemExit) as info:
        gpu_profile.main()
    assert info.value.code == 2 and "expected e.g. 1x128,32x128" in capsys.readouterr().err
