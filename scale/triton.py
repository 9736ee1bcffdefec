"""`bert14 triton-repo ARTIFACT OUT`: the artifact as a Triton Inference Server model repository.

    OUT/
      bert14/               ensemble: text (and text_pair) in, label, score, probs, labels out: the names
                            bert14 serve's Open Inference Protocol uses, so one client fits both
        config.pbtxt, 1/
      bert14_tokenize/      Python backend: bert14's tokenizer (scale/triton_models/tokenize.py)
        config.pbtxt, 1/model.py, 1/tokenizer.json, 1/bert14_tokenize.json
      bert14_model/         ONNX Runtime backend: model.int8.onnx (CPU) or model.fp16.onnx (GPU)
        config.pbtxt, 1/model.onnx, labels.txt
      bert14_postprocess/   Python backend: logits -> label, score, probs, labels (scale/triton_models/postprocess.py)
        config.pbtxt, 1/model.py, 1/bert14_head.json

The ONNX model batches dynamically (preferred sizes, a queue delay); the tokenizer pads each request
to a bucket length so that requests of similar length can share a batch. Every config.pbtxt parses
with the ModelConfig protobuf that tritonclient ships (tested). tritonserver itself, with its ONNX
Runtime and Python backends, comes in NVIDIA's containers (nvcr.io/nvidia/tritonserver:<tag>-py3),
which the Python backend models need `pip install tokenizers numpy` in.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bert14.artifact import INPUT_NAMES, read_manifest
from bert14.errors import InputError
from bert14.head import label_thresholds, score_function
from bert14.long_text import TRUNCATE
from bert14.options import flag
from bert14.runtime import Classifier, LoadOptions
from bert14.runtime.classifier import positive_int
from bert14.tokenizer import load_tokenizer

ENSEMBLE, TOKENIZE, MODEL, POSTPROCESS = "bert14", "bert14_tokenize", "bert14_model", "bert14_postprocess"
HEAD_OUTPUTS = ("label", "score", "probs", "labels")  # what the ensemble answers, as /v2 on bert14 serve
TEMPLATES = Path(__file__).parent / "triton_models"
MARKER = ".bert14-triton-repo.json"  # lists the model directories triton-repo wrote (and may replace)
# A model's name is its directory in the repository: one path component, of the characters Triton's
# examples and model names use; never "." or "..", never hidden, never a path.
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class RepoOptions:
    """What the repository holds and how Triton runs it. Each field with `flag` metadata is also the
    flag of that name on `bert14 triton-repo` (bert14/options.py)."""

    # cpu: INT8 on KIND_CPU; gpu: fp16 on KIND_GPU
    device: str = field(default="cpu", metadata=flag("cpu: INT8 model; gpu: fp16 model", choices=("cpu", "gpu")))
    max_batch: int = field(default=64, metadata=flag("Triton's max_batch_size"))  # for every model
    preferred_batch: tuple[int, ...] = (8, 16, 32)
    # the dynamic batcher waits this long to fill a preferred batch
    queue_delay_us: int = field(default=2000, metadata=flag("dynamic batching queue delay"))
    instances: int = field(default=1, metadata=flag("model instances per device"))
    threads: int = field(default=2, metadata=flag("ONNX Runtime intra-op threads per CPU instance"))
    name: str = field(default=ENSEMBLE, metadata=flag("the ensemble's name: what clients call"))
    # The runtime's options; a repository honours those of the head: threshold and label_thresholds
    # decide the postprocess model's `labels`, as they decide Classifier.predict's.
    load: LoadOptions = field(default_factory=LoadOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("--name: expected the ensemble's model name (letters, digits, '_', '.', '-'), got ''")
        if not MODEL_NAME.fullmatch(self.name):
            raise InputError(
                f"--name {self.name!r}: expected one model name of up to 128 letters, digits, '_', '.' or '-', "
                "not starting with '.' or '-' (it names a directory inside OUT, never a path)"
            )
        if self.device not in ("cpu", "gpu"):
            raise InputError(f"--device: expected cpu or gpu, got {self.device!r}")
        positive_int("max_batch", self.max_batch, 1 << 16)
        positive_int("instances", self.instances, 1024)
        positive_int("threads", self.threads, 1024)
        positive_int("queue_delay_us", self.queue_delay_us, 10_000_000)
        if any(not 1 <= b <= self.max_batch for b in self.preferred_batch):
            raise InputError(f"preferred batch sizes {self.preferred_batch}: expected 1..{self.max_batch}")


def _io(kind: str, name: str, dtype: str, dims: list[int], extra: str = "") -> str:
    return f'{kind} {{\n  name: "{name}"\n  data_type: {dtype}\n  dims: {dims}{extra}\n}}'


def _config(name: str, body: list[str], max_batch: int, backend: str | None = None, platform: str | None = None) -> str:
    head = [f'name: "{name}"']
    head += [f'backend: "{backend}"'] if backend else []
    head += [f'platform: "{platform}"'] if platform else []
    return "\n".join([*head, f"max_batch_size: {max_batch}", *body]) + "\n"


def _text_inputs() -> list[str]:
    return [
        _io("input", "text", "TYPE_STRING", [1]),
        _io("input", "text_pair", "TYPE_STRING", [1], "\n  optional: true"),
    ]


def _head_outputs(num_labels: int, labels_file: bool = False) -> list[str]:
    return [
        _io("output", "label", "TYPE_STRING", [1]),
        _io("output", "score", "TYPE_FP32", [1]),
        _io("output", "probs", "TYPE_FP32", [num_labels], '\n  label_filename: "labels.txt"' if labels_file else ""),
        _io("output", "labels", "TYPE_BOOL", [num_labels]),  # [i, j]: label j applies to row i
    ]


def _model_config(options: RepoOptions, num_labels: int, inputs: tuple[str, ...]) -> str:
    kind = "KIND_GPU" if options.device == "gpu" else "KIND_CPU"
    body = [
        *(_io("input", n, "TYPE_INT64", [-1]) for n in inputs),
        _io("output", "logits", "TYPE_FP32", [num_labels], '\n  label_filename: "labels.txt"'),
        "dynamic_batching {\n"
        f"  preferred_batch_size: {list(options.preferred_batch)}\n"
        f"  max_queue_delay_microseconds: {options.queue_delay_us}\n}}",
        f"instance_group {{\n  count: {options.instances}\n  kind: {kind}\n}}",
    ]
    if options.device == "cpu":  # the onnxruntime backend's thread settings (CPU execution provider)
        for key, value in (("intra_op_thread_count", options.threads), ("inter_op_thread_count", 1)):
            body.append(f'parameters {{\n  key: "{key}"\n  value: {{ string_value: "{value}" }}\n}}')
    return _config(MODEL, body, options.max_batch, backend="onnxruntime")


def _python_config(name: str, inputs: list[str], outputs: list[str], options: RepoOptions) -> str:
    kind = "KIND_CPU"  # tokenizing and the softmax run on the CPU whatever the model's device
    body = [*inputs, *outputs, f"instance_group {{\n  count: {options.instances}\n  kind: {kind}\n}}"]
    return _config(name, body, options.max_batch, backend="python")


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = [f'    input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    maps += [f'    output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return f'  step {{\n    model_name: "{model}"\n    model_version: -1\n' + "\n".join(maps) + "\n  }"


def _ensemble_config(options: RepoOptions, num_labels: int, inputs: tuple[str, ...]) -> str:
    features = {n: f"_{n}" for n in inputs}
    steps = [
        _step(TOKENIZE, {"text": "text", "text_pair": "text_pair"}, features),
        _step(MODEL, {n: v for n, v in features.items()}, {"logits": "_logits"}),
        _step(POSTPROCESS, {"logits": "_logits"}, {n: n for n in HEAD_OUTPUTS}),
    ]
    body = [*_text_inputs(), *_head_outputs(num_labels), "ensemble_scheduling {\n" + "\n".join(steps) + "\n}"]
    return _config(options.name, body, options.max_batch, platform="ensemble")


def configs(options: RepoOptions, num_labels: int, inputs: tuple[str, ...] = INPUT_NAMES) -> dict[str, str]:
    """Each model directory's config.pbtxt; `inputs`: the model's, as its family names them (bert14/family.py)."""
    return {
        options.name: _ensemble_config(options, num_labels, inputs),
        TOKENIZE: _python_config(
            TOKENIZE, _text_inputs(), [_io("output", n, "TYPE_INT64", [-1]) for n in inputs], options),
        MODEL: _model_config(options, num_labels, inputs),
        POSTPROCESS: _python_config(
            POSTPROCESS, [_io("input", "logits", "TYPE_FP32", [num_labels])], _head_outputs(num_labels), options
        ),
    }  # fmt: skip


def _ours(out: Path) -> set[str]:
    """Model directories an earlier triton-repo wrote into `out` (its marker lists them)."""
    try:
        listed = json.loads((out / MARKER).read_text(encoding="utf-8")).get("models", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}


def write_repo(artifact: Path, out: Path, options: RepoOptions | None = None) -> list[Path]:
    """Write bert14's four models (see the module's docstring) into the model repository `out`, which
    may be absent or hold other models: only directories an earlier triton-repo wrote there (its
    marker lists them) are replaced, and a model directory of the same name that is not bert14's
    is refused. Returns the files written."""
    options = options or RepoOptions()
    if options.load.long_text.strategy != TRUNCATE:
        raise InputError(
            f"--long-text {options.load.long_text.strategy}: the repository's tokenize model truncates, as "
            "transformers does; serve head_tail or windows with `bert14 serve`, or drop the flag"
        )
    names = [options.name, TOKENIZE, MODEL, POSTPROCESS]
    if options.name in names[1:]:
        raise InputError(f"--name {options.name!r}: taken by one of the repository's own models; choose another")
    artifact, out = Path(artifact), Path(out)
    manifest = read_manifest(artifact)
    precision = "fp16" if options.device == "gpu" else "int8"
    model_file = Classifier.files(artifact, precision, "cpu")[1]  # which file, and that it is there
    if out.is_symlink() and not out.exists():
        raise InputError(f"{out}: a symbolic link to {out.readlink()}, which does not exist; expected a model "
                         "repository directory, or a path that does not exist yet")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected a model repository directory, found a file")
    ours = _ours(out)
    clash = sorted(name for name in names if (out / name).exists() and name not in ours)
    if clash:
        raise InputError(
            f"{out}: model directories {clash} are there and not bert14's; choose another --name or OUT "
            "(triton-repo never deletes what it did not write)"
        )
    tokenizer, settings = load_tokenizer(artifact, manifest.model.family)
    labels = [str(label) for label in manifest.model.labels]
    function = manifest.model.score_function or score_function(None, len(labels))
    thresholds = label_thresholds(labels, options.load.threshold, options.load.label_thresholds)  # before writing
    max_length = min(settings.model_max_length, manifest.model.max_tokens)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".bert14-stage-", dir=out))
    try:
        inputs = manifest.model.family.input_names
        for name, text in configs(options, len(labels), inputs).items():
            (stage / name / "1").mkdir(parents=True)
            (stage / name / "config.pbtxt").write_text(text, encoding="utf-8")
        tok, post, model = stage / TOKENIZE / "1", stage / POSTPROCESS / "1", stage / MODEL / "1"
        shutil.copyfile(TEMPLATES / "tokenize.py", tok / "model.py")
        tokenizer.save(str(tok / "tokenizer.json"))
        pad_id = tokenizer.token_to_id(settings.pad_token) or 0
        tokenize = {"max_length": max_length, "pad_id": pad_id, "inputs": list(inputs)}
        (tok / "bert14_tokenize.json").write_text(json.dumps(tokenize) + "\n")
        shutil.copyfile(TEMPLATES / "postprocess.py", post / "model.py")
        head = {"labels": labels, "score_function": function, "thresholds": thresholds.tolist()}
        (post / "bert14_head.json").write_text(json.dumps(head, ensure_ascii=False) + "\n", encoding="utf-8")
        shutil.copyfile(artifact / model_file, model / "model.onnx")
        (stage / MODEL / "labels.txt").write_text("".join(label + "\n" for label in labels), encoding="utf-8")
        marker = {"models": sorted(names), "artifact_version": manifest.files[model_file][:16]}
        (out / MARKER).write_text(json.dumps({**marker, "models": sorted(set(names) | ours)}) + "\n")
        for name in sorted(set(names) | ours):  # ours from before that this run does not write go too
            old = stage / f".old-{name}"
            if (out / name).exists():
                (out / name).rename(old)
            if (stage / name).exists():
                (stage / name).rename(out / name)
        (out / MARKER).write_text(json.dumps(marker) + "\n")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return sorted(p for name in names for p in (out / name).rglob("*") if p.is_file())
