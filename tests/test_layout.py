"""The tree's contract: dependencies point one way, and the installed command works.

    bert14/ (core: artifact contract, head, tokenizer, encode, errors)  <- every stage imports it
    export/ -> optimize/ -> quantize/      the build side; commands/build.py chains them
    runtime/                               numpy + onnxruntime + tokenizers, nothing of the build
    scale/                                 Ray on top of the runtime's public API, nothing of the build

Every file of every folder is read, subfolders included, and relative imports are resolved to the
module they name; torch and transformers belong to export/ and check/ (the PyTorch reference) only.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_SIDE = ("bert14.export", "bert14.optimize", "bert14.quantize", "bert14.commands", "bert14.check")
TORCH = ("torch", "transformers")
HEAVY = TORCH + ("onnx", "onnxscript", "onnx_ir", "safetensors")
# folder -> module prefixes its files must not import
FORBIDDEN = {
    "runtime": BUILD_SIDE + HEAVY,
    "export": ("bert14.runtime", "bert14.optimize", "bert14.quantize", "bert14.commands"),
    "optimize": ("bert14.runtime", "bert14.export", "bert14.quantize", "bert14.commands") + TORCH,
    "quantize": (
        ("bert14.runtime", "bert14.export", "bert14.commands", "bert14.check.reference", "bert14.check.artifact")
        + TORCH
    ),
    "check": ("bert14.runtime", "bert14.commands", "bert14.optimize", "bert14.quantize"),
    # Scale-out adds no model logic: the runtime's public API (Classifier, the server app), not its engines.
    "scale": BUILD_SIDE + HEAVY + ("bert14.runtime.engines", "bert14.runtime.cuda"),
}
# The engines are the runtime's light side: the parity runners, the fusion probe and the INT8 build open
# their ONNX Runtime sessions there too.
ENGINES = "bert14.runtime.engines"
# `check --long-text` holds the Classifier, as served, to PyTorch (check/long_text.py).
ALLOWED = {"check": (ENGINES, "bert14.runtime.classifier"), "optimize": (ENGINES,), "quantize": (ENGINES,)}


def _package(path: Path) -> str:
    """The installed package a file of the tree belongs to: runtime/x.py -> bert14.runtime."""
    parts = path.parent.relative_to(ROOT).parts
    return ".".join(parts) if parts[0] == "bert14" else ".".join(("bert14", *parts))


def _imports(path: Path, package: str | None = None) -> list[str]:
    """Every module a file imports, relative imports resolved against `package` (its own by default)."""
    package = package or _package(path)
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
            if node.module:
                names.append(f"{base}.{node.module}")
            else:  # from . import x, y: each is a module (or a name) of the package
                names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(
    files: list[Path], forbidden: tuple[str, ...], package: str | None = None, allowed: tuple[str, ...] = ()
) -> list[str]:
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} imports {name}"
        for path in files
        for name in _imports(path, package)
        if _under(name, forbidden) and not _under(name, allowed)
    ]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_dependencies_point_one_way(folder: str) -> None:
    files = _files(folder)
    assert files, f"{folder}/ has no Python files: the layout check would pass on nothing"
    assert _violations(files, FORBIDDEN[folder], allowed=ALLOWED.get(folder, ())) == []


def test_the_core_package_imports_no_stage() -> None:
    files = _files("bert14")  # the orchestrators live in commands/, which imports every stage
    assert _violations(files, BUILD_SIDE + HEAVY + ("bert14.runtime", "bert14.scale", "ray")) == []


def test_the_layout_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom bert14.export.model import x\n")
    assert len(_violations([bad], FORBIDDEN["runtime"], "bert14.runtime")) == 2


def test_relative_imports_are_resolved_and_subfolders_read(tmp_path: Path) -> None:
    nested = tmp_path / "engines" / "bad.py"
    nested.parent.mkdir()
    nested.write_text("from ...export import model\nfrom ..quantize.dynamic import x\nfrom . import session\n")
    found = _imports(nested, "bert14.runtime.engines")
    assert found == ["bert14.export", "bert14.runtime.quantize.dynamic", "bert14.runtime.engines.session"]
    assert _violations([nested], FORBIDDEN["runtime"], "bert14.runtime.engines") == [f"{nested} imports bert14.export"]
    assert ROOT / "scale" / "triton_models" / "tokenize.py" in _files("scale")


def test_torch_stays_in_export_and_check() -> None:
    for folder in ("optimize", "quantize", "runtime", "scale"):
        assert not _violations(_files(folder), TORCH), folder
    assert _violations(_files("export"), TORCH), "export/ builds the model in PyTorch: the check sees it"


def test_runtime_imports_without_torch_or_onnx_in_a_fresh_interpreter() -> None:
    code = (
        "import sys, bert14.runtime, bert14.runtime.server, bert14.tokenizer, bert14.artifact; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_installed_console_command_runs() -> None:
    command = shutil.which("bert14", path=str(Path(sys.executable).parent))
    assert command is not None, "the bert14 console script is not installed next to this interpreter"
    result = subprocess.run([command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "export" in result.stdout and "serve" in result.stdout


def test_runners_and_comparator_need_no_torch() -> None:
    """The INT8 fallback (and a second engine) use them where PyTorch is not installed."""
    code = (
        "import sys, bert14.check.runners, bert14.check.compare, bert14.quantize.fallback; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_cli_offers_the_library_choices_and_defaults() -> None:
    """The CLI keeps its own copies (importing the build side would load torch for `--help`):
    they must not drift from the library's."""
    import dataclasses

    from bert14.commands.build import ExportOptions
    from bert14.commands.cli import build_parser
    from bert14.export.model import ATTN_IMPLEMENTATIONS
    from bert14.export.onnx_export import EXPORTERS
    from bert14.quantize.static import CALIBRATORS
    from bert14.runtime.server_options import ServerOptions

    commands = build_parser()._bert14_commands

    def action(command: str, dest: str):
        return next(a for a in commands[command]._actions if a.dest == dest)

    assert set(action("export", "exporter").choices) == set(EXPORTERS)
    assert set(action("export", "attn").choices) == set(ATTN_IMPLEMENTATIONS)
    assert set(action("export", "int8_calibrate").choices) == set(CALIBRATORS)
    export_defaults = {f.name: f.default for f in dataclasses.fields(ExportOptions)}
    for dest in ("exporter", "attn", "opset", "seed"):
        assert action("export", dest).default == export_defaults[dest], dest
    from bert14.options import FLAG, flag_fields

    server = flag_fields(ServerOptions)  # serve's flags are declared on the dataclass: one per flag field
    assert {"host", "port", "max_texts", "body_timeout_s", "ui"} <= {f.name for f in server}
    for field in server:
        spec = field.metadata[FLAG]
        default = action("serve", field.name).default
        if spec["repeat"]:  # collected into a list, which `parse` turns into the field's value
            default = spec["parse"](default) if spec["parse"] else default
        assert default == field.default, field.name
    from bert14.scale.triton import RepoOptions

    repo = flag_fields(RepoOptions)  # triton-repo's, likewise
    assert {"device", "max_batch", "queue_delay_us", "instances", "threads", "name"} == {f.name for f in repo}
    for field in repo:
        assert action("triton-repo", field.name).default == field.default, field.name


def test_the_batch_command_offers_the_scale_librarys_choices() -> None:
    pytest.importorskip("ray", reason="the batch command's library needs the ray extra")
    from bert14.commands.cli import build_parser
    from bert14.runtime.engines import PRECISIONS
    from bert14.scale.job import OUTPUT_FORMATS, BatchOptions
    from bert14.scale.sources import FORMATS

    batch = build_parser()._bert14_commands["batch"]
    action = {a.dest: a for a in batch._actions}
    assert tuple(action["output_format"].choices) == OUTPUT_FORMATS
    assert action["output_format"].default == BatchOptions.output_format
    assert set(action["format"].choices) == set(FORMATS)
    assert set(action["precision"].choices) <= set(PRECISIONS)


def test_the_serve_replica_options_match_the_librarys() -> None:
    pytest.importorskip("ray.serve", reason="replicas need the ray extra")
    from bert14.commands.cli import build_parser
    from bert14.scale.replicas import ReplicaOptions

    action = {a.dest: a for a in build_parser()._bert14_commands["serve"]._actions}
    for dest in ("threads_per_replica", "max_ongoing_requests", "max_queued_requests"):
        assert action[dest].default == getattr(ReplicaOptions, dest), dest
