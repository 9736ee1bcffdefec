"""The artifact manifest: what was built, from what, with which tools, and how well it matched.

Standard library only: the runtime reads manifests without torch or onnx installed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bert14.errors import ArtifactError
from bert14.jsonfile import read_json_object

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
# The marker that tells a bert14 manifest from any other manifest.json (export replaces only its own).
FORMAT = "bert14-artifact"
# Every file name an export may write into an artifact directory; nothing else is ever replaced there.
ARTIFACT_FILE_NAMES = frozenset(
    {
        "model.onnx",
        "model.opt.onnx",
        "model.fp16.onnx",
        "model.fp16.seqlen.onnx",
        "model.int8.onnx",
        "config.json",
        "vocab.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        MANIFEST_NAME,
    }
)

# Instruction-set flags that change which ONNX Runtime CPU kernels run (and how INT8 saturates).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


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


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash the directory's files into the manifest and write it; returns what was written."""
    manifest = {"format": FORMAT, **manifest}
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["files"] = file_hashes(directory)
    text = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False)
    (directory / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: expected an artifact directory, found none")
    if not path.is_file():
        raise ArtifactError(f"{path}: expected the artifact's manifest, file is missing (re-run export)")
    manifest = read_json_object(path, ArtifactError, "a bert14 manifest")
    if "files" not in manifest:
        raise ArtifactError(f"{path}: expected a bert14 manifest with a 'files' table, found none")
    return manifest


def verify_files(directory: Path, manifest: dict[str, Any], names: list[str] | None = None) -> None:
    """Raise ArtifactError unless each named file (default: all) exists with its recorded sha256."""
    recorded: dict[str, str] = manifest["files"]
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
