from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_SHAPE

from bert14.errors import InputError
from bert14.export.model import BERT14_LABELS, bert14_config, build_default, build_seeded, load_checkpoint
from bert14.export.vocab import build_vocab


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_default_model_is_bert14_shaped() -> None:
    config = bert14_config()
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (21128, 768, 12)
    assert (config.num_attention_heads, config.intermediate_size, config.max_position_embeddings) == (12, 3072, 512)
    assert config.type_vocab_size == 2 and config.num_labels == 14
    assert [config.id2label[i] for i in range(14)] == list(BERT14_LABELS)


def test_seeded_build_is_reproducible_and_seed_matters() -> None:
    config = bert14_config(**TINY_SHAPE)
    assert _same_weights(build_seeded(config, 14), build_seeded(config, 14))
    assert not _same_weights(build_seeded(config, 14), build_seeded(config, 15))


def test_seeded_build_leaves_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_default(**TINY_SHAPE)
    assert torch.equal(torch.rand(3), expected)


def _save_checkpoint(
    directory: Path,
    labels: int = 7,
    safe: bool = True,
    problem_type: str | None = None,
    bias: list[float] | None = None,
    hidden_act: str = "gelu",
) -> torch.nn.Module:
    """A tiny checkpoint as save_pretrained writes it; `bias` sets the classifier's bias, so a
    seeded head can have labels that clearly apply or not."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        problem_type=problem_type,
        hidden_act=hidden_act,
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=labels,
        max_position_embeddings=64,
    )
    torch.manual_seed(3)
    model = BertForSequenceClassification(config).eval()
    if bias is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(directory, safe_serialization=safe)
    if not safe:  # transformers 5 always writes safetensors; make the legacy pickle by hand
        (directory / "model.safetensors").unlink(missing_ok=True)
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    (directory / "vocab.txt").write_text("\n".join(build_vocab()[:300]) + "\n", encoding="utf-8")
    return model


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_checkpoint_of_other_size_and_label_count_loads(tmp_path: Path, safe: bool) -> None:
    original = _save_checkpoint(tmp_path, labels=7, safe=safe)
    source = load_checkpoint(tmp_path)
    assert source.config.num_labels == 7 and len(source.labels) == 7
    assert source.config.hidden_size == 64 and len(source.vocab) == 300
    assert _same_weights(source.model, original)
    assert source.origin["kind"] == "checkpoint"


def test_trained_fixture_loads(tmp_path: Path) -> None:
    from conftest import TRAINED_MODEL, need

    source = load_checkpoint(need(TRAINED_MODEL))
    assert source.labels == list(BERT14_LABELS)
    assert source.config.num_hidden_layers == 6 and len(source.vocab) == 21128


def _expect_input_error(directory: Path, fragment: str) -> str:
    with pytest.raises(InputError) as info:
        load_checkpoint(directory)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message
    return message


def test_missing_directory_and_files_name_what_is_expected(tmp_path: Path) -> None:
    _expect_input_error(tmp_path / "nope", "expected a checkpoint directory")
    _save_checkpoint(tmp_path)
    (tmp_path / "vocab.txt").unlink()
    _expect_input_error(tmp_path, "vocab.txt")
    (tmp_path / "model.safetensors").unlink()
    _expect_input_error(tmp_path, "model.safetensors or pytorch_model.bin")
    (tmp_path / "config.json").unlink()
    _expect_input_error(tmp_path, "config.json")


def test_malformed_files_are_named(tmp_path: Path) -> None:
    _save_checkpoint(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated download
    _expect_input_error(tmp_path, "model.safetensors: expected a readable weights file")
    weights.write_bytes(data)
    config = tmp_path / "config.json"
    raw = json.loads(config.read_text())
    config.write_text("{not json")
    _expect_input_error(tmp_path, "config.json: expected a Hugging Face model config in JSON")
    config.write_text(json.dumps({**raw, "model_type": "gpt2"}))
    refused = _expect_input_error(tmp_path, "model_type 'gpt2' is not supported; expected one of")
    assert "'bert' (BertForSequenceClassification)" in refused
    config.write_text(json.dumps({**raw, "hidden_size": 128}))
    _expect_input_error(tmp_path, "config.json implies")


def test_bin_checkpoint_is_loaded_without_running_pickled_code(tmp_path: Path) -> None:
    _save_checkpoint(tmp_path, safe=False)

    class Boom:
        def __reduce__(self):  # would run at unpickling time under weights_only=False
            return (eval, ("1/0",))

    torch.save({"payload": Boom()}, tmp_path / "pytorch_model.bin")
    _expect_input_error(tmp_path, "pytorch_model.bin: expected a readable weights file")


def _save_v5_tokenizer(directory: Path, lower: bool) -> None:
    """What transformers 5's save_pretrained writes: tokenizer.json and tokenizer_config.json, no vocab.txt."""
    from transformers import BertTokenizer

    BertTokenizer(str(directory / "vocab.txt"), do_lower_case=lower).save_pretrained(directory)
    (directory / "vocab.txt").unlink()
    assert (directory / "tokenizer.json").is_file()


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_a_checkpoint_with_tokenizer_json_only_tokenizes_as_transformers_does(tmp_path: Path, lower: bool) -> None:
    from transformers import AutoTokenizer

    from bert14.tokenizer import build_tokenizer

    _save_checkpoint(tmp_path)
    _save_v5_tokenizer(tmp_path, lower)
    source = load_checkpoint(tmp_path)
    assert source.vocab == build_vocab()[:300] and source.tokenizer_settings.do_lower_case is lower
    assert "tokenizer.json" in source.origin["files"]
    ours = build_tokenizer(source.vocab, source.tokenizer_settings)
    reference = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in ["Hello World", "ABC abc Déjà", "北京 Beijing 123", ""]:
        assert ours.encode(text).ids == reference(text)["input_ids"], text
    assert (ours.encode("ABC").ids == ours.encode("abc").ids) is lower

    from bert14.commands.build import ExportOptions, export_artifact
    from bert14.runtime import Classifier

    artifact = tmp_path / "artifact"
    export_artifact(ExportOptions(model_dir=tmp_path, out_dir=artifact, exporter="torchscript", optimize=False))
    clf = Classifier.load(artifact, precision="fp32", provider="cpu", warmup=False)
    assert clf._tokenizer.encode("ABC abc Déjà").ids == reference("ABC abc Déjà")["input_ids"]


def test_tokenizer_json_that_bert14_would_read_differently_is_refused(tmp_path: Path) -> None:
    _save_checkpoint(tmp_path)
    _save_v5_tokenizer(tmp_path, lower=False)
    settings_path, tokenizer_path = tmp_path / "tokenizer_config.json", tmp_path / "tokenizer.json"
    settings, tokenizer = json.loads(settings_path.read_text()), json.loads(tokenizer_path.read_text())
    settings_path.write_text(json.dumps({**settings, "do_lower_case": True}))
    _expect_input_error(tmp_path, "do_lower_case is True, but tokenizer.json says False")
    settings_path.write_text(json.dumps(settings))
    added = {"id": 300, "content": "[NEW]", "special": False}
    tokenizer_path.write_text(json.dumps({**tokenizer, "added_tokens": [*tokenizer["added_tokens"], added]}))
    _expect_input_error(tmp_path, "tokens added outside the WordPiece vocabulary are not supported: ['[NEW]']")
    tokenizer_path.write_text(json.dumps({**tokenizer, "model": {**tokenizer["model"], "type": "BPE"}}))
    _expect_input_error(tmp_path, "expected BERT's tokenizer")
    tokenizer_path.unlink()
    _expect_input_error(tmp_path, "vocab.txt (one token a line) or tokenizer.json, found neither")


def test_a_tanh_gelu_checkpoint_exports_with_fast_gelu_and_others_are_refused(tmp_path: Path) -> None:
    from bert14.commands.build import ExportOptions, export_artifact

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    _save_checkpoint(checkpoint, labels=3, hidden_act="gelu_new")
    assert load_checkpoint(checkpoint).config.hidden_act == "gelu_new"
    report = export_artifact(ExportOptions(model_dir=checkpoint, out_dir=tmp_path / "art"))  # every gate passed
    assert report.manifest.raw["fusions"]["counts"]["FastGelu"] == 2
    config = checkpoint / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_act": "relu"}))
    message = _expect_input_error(checkpoint, "expected hidden_act one of")
    assert "'gelu_new'" in message and "found 'relu'" in message


def _checkpoint_with_config(directory: Path, change: dict) -> None:
    """A tiny 3-label checkpoint whose config.json has `change` written over it."""
    _save_checkpoint(directory, labels=3)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    (directory / "config.json").write_text(json.dumps({**config, **change}), encoding="utf-8")


def test_duplicate_labels_are_refused_naming_config_json(tmp_path: Path) -> None:
    _checkpoint_with_config(tmp_path, {"id2label": {"0": "A", "1": "A", "2": "B"}})  # probs by label lose an A
    message = _expect_input_error(tmp_path, "config.json: expected a different name for each label")
    assert "'A' more than once" in message


# Each would need from 1 GB (10^4 layers) to 128 GB (10^9 embedding rows) if the model were built first.
OVERSIZED = [
    ({"hidden_size": 10**6, "num_attention_heads": 1000}, "config.json implies (1000000,)"),
    ({"vocab_size": 10**9}, "config.json implies (1000000000, 64)"),
    ({"max_position_embeddings": 10**8}, "config.json implies (100000000, 64)"),
    ({"intermediate_size": 10**7}, "config.json implies (10000000,"),
    ({"num_hidden_layers": 10**4}, "it says num_hidden_layers 10000, the weights hold 2 layers"),
    ({"num_labels": 10**9, "id2label": None}, "expected num_labels a whole number from 1 to 65536"),
]


@pytest.mark.parametrize(("change", "fragment"), OVERSIZED, ids=lambda v: next(iter(v)) if isinstance(v, dict) else "")
def test_an_oversized_config_is_held_against_the_weights_before_anything_is_built(
    tmp_path: Path, change: dict, fragment: str
) -> None:
    import subprocess
    import sys

    _checkpoint_with_config(tmp_path, change)
    # Under an address-space limit 1 GB above what the imports take, so a model built before the check
    # fails with MemoryError instead of being refused in one line.
    code = (
        "import resource, sys\n"
        "from bert14.errors import InputError\n"
        "from bert14.export.model import load_checkpoint\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    load_checkpoint({str(tmp_path)!r})\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert fragment in done.stdout and done.stdout.count("\n") == 1, done.stdout


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"vocab_size": -5}, "expected vocab_size from 1 to"),
        ({"hidden_size": 0}, "expected hidden_size from 1 to"),
        ({"intermediate_size": -1}, "expected intermediate_size from 1 to"),
        ({"layer_norm_eps": "x"}, "expected layer_norm_eps a number between 0 and 1, found 'x'"),
        ({"pad_token_id": 10**9}, "expected pad_token_id null or an id from 0 to 299 (vocab_size)"),
        ({"pad_token_id": -7}, "expected pad_token_id null or an id from 0 to 299"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_a_size_or_id_no_model_can_have_is_named_not_an_internal_error(
    tmp_path: Path, change: dict, fragment: str
) -> None:
    _checkpoint_with_config(tmp_path, change)
    assert "config.json" in _expect_input_error(tmp_path, fragment)
