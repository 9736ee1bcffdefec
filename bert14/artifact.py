"""The artifact contract that export, quantize and runtime share: file names and the manifest.

An artifact directory holds the files below and a manifest.json that records what was built, from
what, with which tools, how well each file matched PyTorch, and the sha256 of every file. The
manifest is read into `Manifest` (typed, schema-version checked); an artifact written by a newer
bert14 is refused with a clear message instead of being half understood.

Standard library only: the runtime reads manifests without torch or onnx installed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from bert14.errors import ArtifactError, shown
from bert14.family import DEFAULT_FAMILY, FAMILIES, ModelFamily
from bert14.jsonfile import read_json_object

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
# The marker that tells a bert14 manifest from any other manifest.json (export replaces only its own).
FORMAT = "bert14-artifact"

MODEL_FILE = "model.onnx"  # fp32, as exported
FUSED_FILE = "model.opt.onnx"  # fp32, fused into ONNX Runtime's transformer ops (CPU)
FP16_FILE = "model.fp16.onnx"  # fused, fp16 (CUDA)
FP16_SEQLEN_FILE = "model.fp16.seqlen.onnx"  # fused fp16, attention on sequence lengths (CUDA, right padding)
INT8_FILE = "model.int8.onnx"  # fused, dynamic INT8 (CPU)
# fused, static INT8 for OpenVINO (CPU): an OpenVINO IR, its graph in .xml and its weights in .bin
OPENVINO_INT8_FILE = "model.int8.ov.xml"
OPENVINO_INT8_WEIGHTS = "model.int8.ov.bin"
CONFIG_FILE = "config.json"  # the Hugging Face config
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
TOKENIZER_JSON_FILE = "tokenizer.json"
# The manifest's key for each model file (its `artifacts` table and `bert14 check`'s report).
MODEL_FILES = {
    "fp32": MODEL_FILE,
    "fp32_fused": FUSED_FILE,
    "fp16": FP16_FILE,
    "fp16_seqlen": FP16_SEQLEN_FILE,
    "int8": INT8_FILE,
    "int8_openvino": OPENVINO_INT8_FILE,
}
# Files a model file cannot load without; they travel, are verified and are replaced with it.
COMPANION_FILES = {OPENVINO_INT8_FILE: (OPENVINO_INT8_WEIGHTS,)}
# What a default-family artifact carries besides its models; the runtime reads (and verifies) all of
# them. An artifact's own: Manifest.model.family.support_files.
SUPPORT_FILES = DEFAULT_FAMILY.support_files
# Every file name an export may write into an artifact directory; nothing else is ever replaced there.
ARTIFACT_FILE_NAMES = frozenset(
    {*MODEL_FILES.values(), *(n for names in COMPANION_FILES.values() for n in names), MANIFEST_NAME}
    | {name for family in FAMILIES.values() for name in family.support_files}
)
# The default family's inputs, int64 (batch, sequence) (an artifact's own: Manifest.model.family), and
# the output every artifact has, float32 (batch, num_labels).
INPUT_NAMES = DEFAULT_FAMILY.input_names
OUTPUT_NAME = "logits"


# Instruction-set flags that change which ONNX Runtime CPU kernels run (and how INT8 saturates).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def with_companions(name: str) -> list[str]:
    """A model file and the files it loads with (an OpenVINO IR's weights), in that order."""
    return [name, *COMPANION_FILES.get(name, ())]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_flags() -> dict[str, bool]:
    """Which of CPU_FLAGS this machine's CPU advertises (Linux /proc/cpuinfo; empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return {}
    flags: set[str] = set()
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return {flag: flag in flags for flag in CPU_FLAGS}


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    loaded = sys.modules.get("onnxruntime")
    if "onnxruntime" in names and loaded is not None:
        # The module actually imported: the GPU wheel provides it under another distribution name,
        # and a CPU wheel may sit in site-packages beside the one on the path.
        versions["onnxruntime"] = getattr(loaded, "__version__", versions["onnxruntime"])
    return versions


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file in the artifact directory except the manifest itself and hidden files
    (export's own staging marker; an artifact has no hidden files)."""
    return {
        path.name: sha256_file(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST_NAME and not path.name.startswith(".")
    }


def is_bert14_manifest(raw: object) -> bool:
    """True for a manifest bert14 wrote: its marker, or (schema 1, before the marker) its version
    key and files table."""
    if not isinstance(raw, dict) or not isinstance(raw.get("files"), dict):
        return False
    if raw.get("format") == FORMAT:
        return True
    return raw.get("schema_version") == 1 and isinstance(raw.get("bert14_version"), str)


@dataclass(frozen=True)
class ModelInfo:
    """The `model` table: the source model's shape, its labels and how its logits are read."""

    labels: list[str]
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    architecture: str = DEFAULT_FAMILY.architecture
    problem_type: str | None = None
    score_function: str | None = None  # softmax | sigmoid | identity (bert14/head.py); absent before 2026-11
    model_type: str = DEFAULT_FAMILY.model_type  # the family (bert14/family.py); absent before 2026-12
    # Tokens a row holds: max_position_embeddings less the rows the family reserves (RoBERTa: padding_idx
    # + 1); absent before 2026-12, when it was max_position_embeddings.
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is None:
            object.__setattr__(self, "max_tokens", self.max_position_embeddings)

    @property
    def family(self) -> ModelFamily:
        return FAMILIES[self.model_type]


@dataclass
class ArtifactEntry:
    """One model file's entry in the manifest's `artifacts` table (keyed by MODEL_FILES' key), as the
    export writes it: what the file is, how it was made, and its figures against PyTorch. Fields left
    None are not written; the order of the fields is the order of the keys in manifest.json."""

    file: str
    weights: str | None = None  # a companion file it loads with (an OpenVINO IR's .bin)
    engine: str | None = None  # absent: onnxruntime
    provider: str | None = None  # where it is meant to run: cpu | cuda
    mask: str | None = None  # what padding it assumes, where it assumes any
    recipe: dict[str, Any] | None = None  # how it was quantized
    kept_fp32: list[str] | None = None  # what quantization left in floating point
    size_bytes: int | None = None
    size_vs_fp32: float | None = None
    validation: dict[str, Any] | None = None  # parity with PyTorch on this machine's provider
    validation_cpu: dict[str, Any] | None = None  # the same, for a file meant for CUDA, checked on the CPU
    fallback: dict[str, Any] | None = None  # the accuracy-driven fallback's steps
    batch_invariance: dict[str, Any] | None = None  # each row alone against batched (check/invariance.py)

    def to_manifest(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Manifest:
    """manifest.json, read and checked. `raw` keeps every table as written (export settings,
    versions, fusion report, validation figures) for reports; code reads the typed fields."""

    schema_version: int
    bert14_version: str
    model: ModelInfo
    files: dict[str, str]  # file name -> sha256
    source: dict[str, Any]  # what it was built from: the default model's seed and shape, or a checkpoint
    artifacts: dict[str, dict[str, Any]]  # MODEL_FILES key -> that file's recipe and validation figures
    raw: dict[str, Any]

    @classmethod
    def parse(cls, raw: dict[str, Any], path: Path) -> Manifest:
        if not is_bert14_manifest(raw):
            raise ArtifactError(f"{path}: expected a bert14 manifest (its 'format' or version and 'files'), found none")
        version = raw.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise ArtifactError(f"{path}: expected an integer schema_version, found {version!r}")
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{path}: written by a newer bert14 (manifest schema {version}; this one reads up to "
                f"{SCHEMA_VERSION}); upgrade bert14 to load it"
            )
        model = raw.get("model")
        known = {f.name for f in fields(ModelInfo)}
        if not isinstance(model, dict) or not {"labels", "max_position_embeddings"} <= set(model):
            raise ArtifactError(f"{path}: expected a 'model' table with labels and sizes, found {shown(model)}")
        try:
            info = ModelInfo(**{k: v for k, v in model.items() if k in known})
        except TypeError as exc:
            raise ArtifactError(f"{path}: the 'model' table lacks a field ({exc})") from exc
        _check_model(info, path)
        _check_files(raw["files"], path)
        for key in ("source", "artifacts"):
            if not isinstance(raw.get(key) or {}, dict):
                raise ArtifactError(f"{path}: expected '{key}' a JSON object, found {shown(raw.get(key))}")
        if not all(isinstance(entry, dict) for entry in (raw.get("artifacts") or {}).values()):
            raise ArtifactError(f"{path}: expected each 'artifacts' entry a JSON object")
        return cls(
            schema_version=version,
            bert14_version=str(raw.get("bert14_version", "")),
            model=info,
            files=dict(raw["files"]),
            source=dict(raw.get("source") or {}),
            artifacts=dict(raw.get("artifacts") or {}),
            raw=raw,
        )

    def file_of(self, key: str) -> str | None:
        """The model file for a MODEL_FILES key, when this artifact has it."""
        name = MODEL_FILES[key]
        return name if name in self.files else None


# The model table's whole-number fields and their least value; none is near this bound in any BERT.
_COUNTS = {"vocab_size": 1, "hidden_size": 1, "num_hidden_layers": 1, "num_attention_heads": 1,
           "intermediate_size": 1, "max_position_embeddings": 1, "type_vocab_size": 0, "max_tokens": 1}  # fmt: skip
_MAX_COUNT = 1 << 31
_SHA256 = frozenset("0123456789abcdef")


def _whole(value: object, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= _MAX_COUNT


def _check_model(info: ModelInfo, path: Path) -> None:
    """Each field of the model table of its type, so a damaged manifest is refused naming the field
    rather than read wrongly (labels "abc" as three labels, max_tokens 0 as no limit)."""
    labels = info.labels
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise ArtifactError(f"{path}: expected model.labels a non-empty list of strings, found {shown(labels)}")
    if len(set(labels)) != len(labels):
        raise ArtifactError(f"{path}: expected model.labels each named once, found {shown(labels)}")
    for name, low in _COUNTS.items():
        if not _whole(getattr(info, name), low):
            raise ArtifactError(f"{path}: expected model.{name} a whole number from {low} to {_MAX_COUNT}, "
                                f"found {shown(getattr(info, name))}")  # fmt: skip
    if info.max_tokens > info.max_position_embeddings:  # type: ignore[operator]
        raise ArtifactError(f"{path}: expected model.max_tokens at most max_position_embeddings "
                            f"({info.max_position_embeddings}), found {info.max_tokens}")  # fmt: skip
    eps = info.layer_norm_eps
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
        raise ArtifactError(f"{path}: expected model.layer_norm_eps a number between 0 and 1, found {shown(eps)}")
    for name in ("architecture", "model_type"):
        if not isinstance(getattr(info, name), str):
            raise ArtifactError(f"{path}: expected model.{name} a string, found {shown(getattr(info, name))}")
    for name in ("problem_type", "score_function"):
        if getattr(info, name) is not None and not isinstance(getattr(info, name), str):
            raise ArtifactError(f"{path}: expected model.{name} a string or null, found {shown(getattr(info, name))}")
    if info.model_type not in FAMILIES:
        raise ArtifactError(
            f"{path}: model_type {info.model_type!r} is not one this bert14 runs ({', '.join(FAMILIES)}); "
            "upgrade bert14 to load it"
        )


def _check_files(files: dict[str, Any], path: Path) -> None:
    """The files table: plain names in the artifact directory (no '/', '..' or hidden names: a manifest must
    not point the runtime or `check` at a file elsewhere), each with a sha256 in hex."""
    for name, digest in files.items():
        if not is_plain_name(name):
            raise ArtifactError(f"{path}: expected 'files' to name files in the artifact directory, found "
                                f"{shown(name)}")  # fmt: skip
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256:
            raise ArtifactError(f"{path}: expected the sha256 of {name} in 'files' as 64 hex digits, found "
                                f"{shown(digest)}")  # fmt: skip


def is_plain_name(name: object) -> bool:
    """A file name that stays in its directory: no separator, not '.', '..' or hidden, no NUL."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and not name.startswith(".")
        and not any(ch in name for ch in "/\\\0")
    )


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Manifest:
    """Hash the directory's files into the manifest and write it; returns what was written."""
    raw = {"format": FORMAT, **manifest}
    raw["schema_version"] = SCHEMA_VERSION
    raw["files"] = file_hashes(directory)
    text = json.dumps(raw, indent=2, ensure_ascii=False, sort_keys=False)
    (directory / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
    return Manifest.parse(raw, directory / MANIFEST_NAME)


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: expected an artifact directory, found none")
    if not path.is_file():
        raise ArtifactError(f"{path}: expected the artifact's manifest, file is missing (re-run export)")
    return Manifest.parse(read_json_object(path, ArtifactError, "a bert14 manifest"), path)


def verify_files(directory: Path, manifest: Manifest, names: list[str] | None = None) -> None:
    """Raise ArtifactError unless each named file (default: all) exists with its recorded sha256."""
    recorded = manifest.files
    for name in names if names is not None else sorted(recorded):
        path = directory / name
        if name not in recorded:
            raise ArtifactError(f"{path}: the manifest records no such file (re-run export)")
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in the manifest but missing (re-run export)")
        actual = sha256_file(path)
        if actual != recorded[name]:
            raise ArtifactError(
                f"{path}: sha256 {actual[:12]}... does not match the manifest's "
                f"{recorded[name][:12]}...; the file was changed after export (re-run export)"
            )
