"""The OpenVINO engine: the NNCF INT8 build in export, its gates, and the runtime's `engine=`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bert14.artifact import OPENVINO_INT8_FILE, OPENVINO_INT8_WEIGHTS, read_manifest
from bert14.check.compare import INT8_LOGIT_ATOL
from bert14.errors import ArtifactError, InputError, QuantizeError
from bert14.runtime import Classifier
from bert14.runtime.engines import openvino as openvino_engine

TEXTS = ["央行宣布降准0.5个百分点", "湖人主场险胜勇士", "秋冬流行色盘点", "记者从市交通委获悉，" * 70]


def test_export_writes_a_gated_openvino_int8_model(tiny_artifact: Path) -> None:
    import openvino as ov

    manifest = read_manifest(tiny_artifact)
    entry = manifest.artifacts["int8_openvino"]
    assert {OPENVINO_INT8_FILE, OPENVINO_INT8_WEIGHTS} <= set(manifest.files)
    assert entry["engine"] == "openvino" and entry["weights"] == OPENVINO_INT8_WEIGHTS
    assert entry["validation"]["passed"] and entry["validation"]["max_abs_logit_diff"] <= INT8_LOGIT_ATOL
    recipe = entry["recipe"]
    assert recipe["source"] == "model.opt.onnx" and recipe["tool"] == "nncf.quantize"
    assert recipe["calibration"]["from"].startswith("seeded") and recipe["inference_precision"] == "f32"
    # Really integer: quantizers on the activations, int8 weights.
    model = ov.Core().read_model(str(tiny_artifact / OPENVINO_INT8_FILE))
    ops = [op.get_type_name() for op in model.get_ops()]
    assert ops.count("FakeQuantize") == recipe["quantizers"] > 0
    # No quantizer with an empty range: NNCF's generic recipe put one on the attention-mask bias
    # (calibrated [0, 0] on unpadded rows), which unmasked padding.
    for op in model.get_ops():
        if op.get_type_name() == "FakeQuantize":
            low, high = (op.input_value(i).get_node().get_data() for i in (1, 2))
            assert float(np.max(high - low)) > 0, op.get_friendly_name()
    int8_constants = [
        op
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i8"
    ]
    assert len(int8_constants) >= 4 * 2, "dense layers of both encoder layers keep int8 weights"


def test_the_openvino_engine_answers_like_the_fp32_model(tiny_artifact: Path) -> None:
    fp32 = Classifier.load(tiny_artifact, precision="fp32", provider="cpu")
    ov = Classifier.load(tiny_artifact, engine="openvino", threads=1)
    assert (ov.engine, ov.precision, ov.provider, ov.model_file) == ("openvino", "int8", "cpu", OPENVINO_INT8_FILE)
    want, got = fp32.logits(TEXTS), ov.logits(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 14) and got.dtype == np.float32
    assert np.abs(got - want).max() <= INT8_LOGIT_ATOL
    # The same bucketing as ONNX Runtime: a text alone gives what it gives in a padded batch, up to
    # the kernels' summation order at another shape (measured: about 1e-4).
    assert np.abs(ov.logits(TEXTS[1:2]) - got[1:2]).max() < 1e-3
    predictions = ov.predict(TEXTS)
    assert predictions[3].truncated and not predictions[0].truncated
    assert ov.describe()["engine"] == "openvino"


def test_auto_takes_openvino_for_int8_and_onnx_runtime_for_the_rest(tiny_artifact: Path, monkeypatch) -> None:
    assert Classifier.load(tiny_artifact, engine="auto", provider="cpu", warmup=False).engine == "openvino"
    fp32 = Classifier.load(tiny_artifact, engine="auto", precision="fp32", provider="cpu", warmup=False)
    assert (fp32.engine, fp32.model_file) == ("onnxruntime", "model.opt.onnx")
    assert Classifier.load(tiny_artifact, provider="cpu", warmup=False).engine == "onnxruntime"  # the default
    # Without the openvino package, auto ignores the OpenVINO file, and asking for it says what to install.
    monkeypatch.setattr(openvino_engine, "available", lambda: False)
    assert Classifier.load(tiny_artifact, engine="auto", provider="cpu", warmup=False).model_file == "model.int8.onnx"
    with pytest.raises(InputError, match=r"openvino package is not installed.*requirements/openvino.txt"):
        Classifier.load(tiny_artifact, engine="openvino")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision": "fp32"}, "INT8 model.*use the onnxruntime engine for fp32 or fp16 .--engine onnxruntime"),
        ({"provider": "cuda"}, "runs on the CPU"),
        ({"engine": "tensorrt"}, r"engine: expected one of \('onnxruntime', 'openvino', 'auto'\)"),
    ],
)
def test_impossible_engine_requests_are_refused(tiny_artifact: Path, options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Classifier.load(tiny_artifact, **({"engine": "openvino"} | options))


def test_the_weights_file_travels_and_is_verified_with_the_model(tiny_artifact: Path, tmp_path: Path) -> None:
    names = Classifier.files(tiny_artifact, engine="openvino")
    assert names[:3] == ["manifest.json", OPENVINO_INT8_FILE, OPENVINO_INT8_WEIGHTS]
    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifact, copy)
    weights = copy / OPENVINO_INT8_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.int8\.ov\.bin: sha256 .* does not match"):
        Classifier.load(copy, engine="openvino")
    assert Classifier.load(copy, provider="cpu", warmup=False).engine == "onnxruntime"  # other files unaffected


def test_an_artifact_without_the_openvino_model_says_how_to_get_it(tiny_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifact, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    for name in (OPENVINO_INT8_FILE, OPENVINO_INT8_WEIGHTS):
        del raw["files"][name]
        (copy / name).unlink()
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="no OpenVINO INT8 model.*re-run `bert14 export`"):
        Classifier.load(copy, engine="openvino")
    assert Classifier.load(copy, engine="auto", provider="cpu", warmup=False).model_file == "model.int8.onnx"


def test_bert14_check_runs_the_openvino_model_against_pytorch(tiny_artifact: Path) -> None:
    from bert14.check.artifact import check_artifact

    reports = check_artifact(tiny_artifact, ["央行宣布降准", "湖人主场险胜勇士" * 80])
    report = reports["int8_openvino"]
    assert report["passed"] and report["sha256_matches_manifest"] and report["rows"] > 20
    assert "truncated" in report["buckets"] and report["threshold"]["logit_atol"] == INT8_LOGIT_ATOL


def test_quantize_refuses_empty_calibration(tiny_artifact: Path, tmp_path: Path) -> None:
    from bert14.quantize.openvino import OpenVinoOptions, quantize_openvino

    with pytest.raises(QuantizeError, match="at least one calibration feed"):
        quantize_openvino(tiny_artifact / "model.opt.onnx", tmp_path / "m.xml", [], OpenVinoOptions())
    assert not (tmp_path / "m.xml").exists()


def test_export_with_calibration_texts_and_accuracy_control(tmp_path: Path) -> None:
    from conftest import TINY_SHAPE

    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.quantize.fallback import FallbackOptions

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS * 3) + "\n", encoding="utf-8")
    options = ExportOptions(
        out_dir=tmp_path / "out",
        shape_overrides=dict(TINY_SHAPE),
        fp16_seqlen=False,
        calibration_texts=texts,
        int8_eval_texts=texts,
        int8_fallback=FallbackOptions(target_agreement=0.99),
    )
    recipe = export_artifact(options).manifest.artifacts["int8_openvino"]["recipe"]
    assert recipe["calibration"] == {"feeds": 12, "used": 12, "from": "12 texts from texts.txt"}
    assert recipe["tool"] == "nncf.quantize_with_accuracy_control"
    assert recipe["accuracy_control"]["target_agreement"] == 0.99


def test_cli_engine_flag(tiny_artifact: Path) -> None:
    cli = str(Path(sys.executable).parent / "bert14")
    ok = subprocess.run([cli, "predict", str(tiny_artifact), "央行宣布降准", "--engine", "openvino"],
                        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ok.returncode == 0 and json.loads(ok.stdout)["label"]
    bad = subprocess.run([cli, "predict", str(tiny_artifact), "x", "--engine", "openvino", "--precision", "fp32"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "INT8 model" in bad.stderr


def test_the_runtime_does_not_import_openvino_until_asked() -> None:
    code = "import sys, bert14.runtime, bert14.runtime.server; print('openvino' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    assert openvino_engine.available()


def test_calibration_options_are_checked_before_the_export_starts(tmp_path: Path) -> None:
    from bert14.commands.build import ExportOptions

    texts = tmp_path / "texts.txt"
    texts.write_text("央行宣布降准\n", encoding="utf-8")
    with pytest.raises(InputError, match="--calibration: the calibration texts are for the OpenVINO INT8 build"):
        ExportOptions(out_dir=tmp_path / "out", openvino=False, calibration_texts=texts)
    with pytest.raises(InputError, match="--calibration: expected a UTF-8 file.*missing.txt"):
        ExportOptions(out_dir=tmp_path / "out", calibration_texts=tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin1.txt: expected UTF-8 text"):
        ExportOptions(out_dir=tmp_path / "out", calibration_texts=tmp_path / "latin1.txt")
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(InputError, match="blank.txt: expected at least one text"):
        ExportOptions(out_dir=tmp_path / "out", calibration_texts=tmp_path / "blank.txt")
    (tmp_path / "nul.txt").write_bytes(b"ok\n\x00\x00\x00\n")
    with pytest.raises(InputError, match="nul.txt: expected text, found a NUL byte on line 2"):
        ExportOptions(out_dir=tmp_path / "out", calibration_texts=tmp_path / "nul.txt")
    with (tmp_path / "huge.txt").open("wb") as handle:  # sparse: 65 MB that take no disk
        handle.truncate(65 << 20)
    with pytest.raises(InputError, match="huge.txt: 65 MB; expected at most 64 MB"):
        ExportOptions(out_dir=tmp_path / "out", calibration_texts=tmp_path / "huge.txt")
    assert not (tmp_path / "out").exists()


def test_concurrent_callers_get_their_own_answers(tiny_artifact: Path) -> None:
    """OpenVINO's infer requests are not thread-safe: each calling thread gets its own."""
    from concurrent.futures import ThreadPoolExecutor

    clf = Classifier.load(tiny_artifact, engine="openvino", threads=1)
    texts = [f"{TEXTS[i % 3]}{i}" for i in range(24)]
    alone = [clf.logits([text]) for text in texts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda text: clf.logits([text]), texts * 3))
    for i, got in enumerate(together):
        assert np.array_equal(got, alone[i % len(texts)]), texts[i % len(texts)]


def test_bert14_check_names_the_changed_or_missing_weights_file(tiny_artifact: Path, tmp_path: Path) -> None:
    from bert14.check.artifact import check_artifact, failures

    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifact, copy)
    weights = copy / OPENVINO_INT8_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one byte
    weights.write_bytes(bytes(data))
    report = check_artifact(copy, ["央行宣布降准"])["int8_openvino"]
    assert report["changed_files"] == [OPENVINO_INT8_WEIGHTS] and not report["passed"]
    assert f"{OPENVINO_INT8_WEIGHTS} differs from the manifest's sha256" in failures({"int8_openvino": report})[0]
    weights.unlink()
    with pytest.raises(ArtifactError, match=rf"{OPENVINO_INT8_WEIGHTS}: listed in the manifest but missing"):
        check_artifact(copy, ["央行宣布降准"])


@pytest.mark.parametrize(
    ("flags", "every_layer"),
    [({"avx2": True, "avx512_vnni": False}, True), ({"avx2": True, "avx512_vnni": True}, False)],
)
def test_avx2_only_cpus_get_7_bit_weights_in_every_layer(
    tiny_artifact: Path, tmp_path: Path, flags: dict, every_layer: bool
) -> None:
    """oneDNN's u8s8 kernels without VNNI saturate 16-bit pair sums: NNCF's overflow fix in every layer there."""
    import openvino as ov

    from bert14.quantize.openvino import OpenVinoOptions, quantize_openvino, seeded_calibration

    manifest = read_manifest(tiny_artifact)
    calibration = seeded_calibration(manifest.model.vocab_size, manifest.model.type_vocab_size, 64)[:8]
    target = tmp_path / "m.xml"
    result = quantize_openvino(
        tiny_artifact / "model.opt.onnx", target, calibration, OpenVinoOptions(), cpu_flags=flags
    )
    assert result.recipe["overflow_fix"]["every_layer"] is every_layer
    model = ov.Core().read_model(str(target))
    weights = [
        op.get_data()
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i8" and _feeds_a_product(op)
    ]
    widest = [int(np.abs(w.astype(np.int16)).max()) for w in weights]
    assert len(widest) >= 4 * 2 + 2  # the dense layers of both encoder layers and the head
    if every_layer:
        assert max(widest) <= 64, widest  # 7 bits: [-64, 63]
    else:
        assert sum(w > 64 for w in widest) >= len(widest) - 1, widest  # full range past the first layer


def _feeds_a_product(constant) -> bool:
    """Whether an int8 constant reaches a MatMul through its dequantize chain (and not a Gather:
    embedding tables are looked up, never multiplied in the u8s8 kernel)."""
    node = constant
    while True:
        users = [target.get_node() for target in node.output(0).get_target_inputs()]
        if len(users) != 1:
            return False
        node = users[0]
        kind = node.get_type_name()
        if kind not in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose"):
            return kind == "MatMul"
