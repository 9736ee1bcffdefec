from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

# A tiny BERT: the suite exercises the pipeline, not the arithmetic of a 110M-parameter model.
TINY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
SHARED = Path(__file__).resolve().parents[2] / "shared"
THUCNEWS = SHARED / "data" / "thucnews14"
REAL_VOCAB = SHARED / "data" / "bert-base-chinese" / "vocab.txt"
TRAINED_MODEL = SHARED / "models" / "bert14-small-thucnews"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: this test reads the shared data in place")
    return path


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One default-model artifact at tiny size, exported once per test session."""
    from bert14.commands.build import ExportOptions, export_artifact

    out = tmp_path_factory.mktemp("artifact") / "bert14"
    export_artifact(ExportOptions(out_dir=out, shape_overrides=dict(TINY_SHAPE)))
    return out


def export_with_activation(tmp: Path, act: str, exporter: str):
    """(model, ONNX path): a tiny seeded BERT whose FFN uses the hidden_act `act` (its biases are
    non-zero, so no exporter merges them into one shared initializer)."""
    from bert14.export.model import bert14_config, build_seeded
    from bert14.export.onnx_export import ExportSettings, export_onnx

    config = bert14_config(**TINY_SHAPE)
    config.hidden_act = act
    model = build_seeded(config)
    path = tmp / f"{act}-{exporter}.onnx"
    export_onnx(model, path, ExportSettings(exporter, 18), 512)
    return model, path


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_with(marker: bytes) -> list[int]:
    """Pids of the processes whose command line holds `marker` (Ray names its workers by their role:
    b"MapBatches(_Worker)", b"ServeReplica:bert14:bert14")."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return sorted(pids)


def serving(*args: str, ready: str = "serving") -> subprocess.Popen:
    """A `bert14 serve ARGS` process, once its first line on stdout (the announcement, printed when
    the port is bound) holds `ready`; the caller stops it."""
    cli = str(Path(sys.executable).parent / "bert14")
    process = subprocess.Popen([cli, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if ready not in line:
        process.kill()
        raise AssertionError(f"bert14 serve did not announce {ready!r}: {line!r} {process.communicate()[1][-2000:]}")
    return process


@pytest.fixture(scope="session")
def trained_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained small BERT-14 from ../shared, exported as the README tells a user to: no flags."""
    out = tmp_path_factory.mktemp("trained") / "art"
    cli = str(Path(sys.executable).parent / "bert14")
    done = subprocess.run([cli, "export", "--model", str(need(TRAINED_MODEL)), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (out.parent / "export.stdout").write_text(done.stdout, encoding="utf-8")
    return out


# Each non-BERT family at tiny size (tests/export/test_families.py): the extra config each needs
# beyond TINY_SHAPE. ELECTRA's embeddings are narrower than its hidden size (the projection), ERNIE
# has task-type embeddings, RoBERTa and XLM-R a single token type.
FAMILY_SHAPES = {
    "roberta": {"type_vocab_size": 1},
    "xlm-roberta": {"type_vocab_size": 1},
    "distilbert": {},
    "electra": {"type_vocab_size": 2, "embedding_size": 16},
    "ernie": {"type_vocab_size": 2, "use_task_id": True, "task_type_vocab_size": 3},
}
FAMILY_POSITIONS = 64  # tokens a row holds: small, so the tests' long texts pass the limit
FAMILY_LABELS = ["体育", "财经", "科技"]


def family_shape(model_type: str) -> dict:
    return {**TINY_SHAPE, "vocab_size": 3000, "positions": FAMILY_POSITIONS, **FAMILY_SHAPES[model_type]}


@pytest.fixture(scope="session")
def family_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """{model_type: (checkpoint, artifact)}: a tiny seeded checkpoint of each family, written as
    save_pretrained writes it, exported with every variant (OpenVINO calibrated on the corpus)."""
    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.export.families import seeded_checkpoint, seeded_corpus

    corpus = seeded_corpus()
    root = tmp_path_factory.mktemp("families")
    calibration = root / "calibration.txt"
    calibration.write_text("\n".join(corpus[:200]) + "\n", encoding="utf-8")
    built = {}
    for model_type in FAMILY_SHAPES:
        checkpoint = seeded_checkpoint(model_type, root / model_type, family_shape(model_type), FAMILY_LABELS, corpus)
        out = root / f"{model_type}-artifact"
        export_artifact(ExportOptions(model_dir=checkpoint, out_dir=out, calibration_texts=calibration))
        built[model_type] = (checkpoint, out)
    return built
