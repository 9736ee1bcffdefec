"""The PyTorch source model: BERT-14 built from its config with seeded weights, or a local checkpoint.

Only this stage (and the parity checks, which need the source) imports torch and transformers.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from huggingface_hub.errors import StrictDataclassError
from transformers import PretrainedConfig, PreTrainedModel

from bert14.artifact import sha256_file
from bert14.errors import ArtifactError, InputError, shown
from bert14.export.vocab import build_vocab
from bert14.family import DEFAULT_FAMILY, ModelFamily, family_for
from bert14.head import PROBLEM_TYPES, score_function
from bert14.jsonfile import read_json_object
from bert14.tokenizer import (
    TOKENIZER_JSON_FILE,
    VOCAB_FILE,
    TokenizerSettings,
    build_tokenizer,
    read_settings,
    read_tokenizer_json,
    read_vocab,
)

# THUCNews categories in the order of ../shared/data/thucnews14/labels.txt.
BERT14_LABELS = (
    "财经",
    "彩票",
    "房产",
    "股票",
    "家居",
    "教育",
    "科技",
    "社会",
    "时尚",
    "时政",
    "体育",
    "星座",
    "游戏",
    "娱乐",
)
DEFAULT_SEED = 14
# The activations a checkpoint may use: the erf GELU (fused to BiasGelu) and the tanh forms
# transformers implements (fused to FastGelu); optimize/gelu.py proves each by evaluation.
GELU_ACTIVATIONS = ("gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
# More labels than this is a broken config.json, not a classifier (the head is hidden x labels).
MAX_LABELS = 1 << 16
# A size in config.json past this is not a model's (the largest BERT vocabularies are about 250,000).
MAX_SIZE = 1 << 31
# Spread of the seeded biases and LayerNorm scales (around 1) of the default model: the size of
# those of a trained BERT, small enough to keep activations in range.
BIAS_STD = 0.02
LAYER_NORM_STD = 0.1

# bert-base-chinese's shape with a 14-way head.
BERT14_SHAPE: dict[str, Any] = {
    "vocab_size": 21128,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}


@dataclass
class SourceModel:
    """A loaded PyTorch classifier plus what it takes to rebuild or re-read it later."""

    model: PreTrainedModel  # the family's `*ForSequenceClassification`
    vocab: list[str]  # tokens by id
    tokenizer_settings: TokenizerSettings
    origin: dict[str, Any] = field(default_factory=dict)
    # A tokenizer.json family's files (name -> bytes), carried into the artifact as the checkpoint has
    # them; empty for WordPiece, whose files the export writes from `vocab` and the settings.
    tokenizer_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def family(self) -> ModelFamily:
        return family_for(self.config.model_type)

    @property
    def max_tokens(self) -> int:
        """Tokens a row holds: the position table's rows after the family's offset (RoBERTa's padding_idx + 1)."""
        return self.config.max_position_embeddings - self.family.position_offset(self.config.pad_token_id)

    @property
    def shape(self) -> dict[str, int]:
        """The config's shape under BERT's key names (DistilBERT's dim, n_layers, ... renamed)."""
        return config_shape(self.config)

    def tokenizer(self):  # noqa: ANN201 - a tokenizers.Tokenizer
        """The tokenizer the artifact will carry, as the runtime builds it (no padding, no truncation)."""
        from tokenizers import Tokenizer

        if not self.tokenizer_files:
            return build_tokenizer(self.vocab, self.tokenizer_settings)
        tokenizer = Tokenizer.from_str(self.tokenizer_files[TOKENIZER_JSON_FILE].decode("utf-8"))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    @property
    def labels(self) -> list[str]:
        return [self.config.id2label[i] for i in range(self.config.num_labels)]

    @property
    def score_function(self) -> str:
        """How the logits are read: softmax, sigmoid or identity (bert14/head.py)."""
        return model_score_function(self.model)


def model_score_function(model: torch.nn.Module) -> str:
    return score_function(model.config.problem_type, model.config.num_labels)


# BERT's shape keys -> each family's config.json keys where they differ.
RENAMED_KEYS = {"distilbert": {"hidden_size": "dim", "num_hidden_layers": "n_layers",
                               "num_attention_heads": "n_heads", "intermediate_size": "hidden_dim"}}  # fmt: skip
# Families whose config has no token type table (their graph has no token_type_ids).
_NO_TYPE_TABLE = ("distilbert",)


def shape_keys(family: ModelFamily) -> dict[str, str]:
    """BERT's shape keys -> the family's config.json keys, for those its config has."""
    renamed = RENAMED_KEYS.get(family.model_type, {})
    keys = [key for key in BERT14_SHAPE if not (key == "type_vocab_size" and family.model_type in _NO_TYPE_TABLE)]
    return {key: renamed.get(key, key) for key in keys}


def config_shape(config: PretrainedConfig) -> dict[str, int]:
    """The config's shape under BERT's key names; type_vocab_size 0 where there is no type table."""
    keys = shape_keys(family_for(config.model_type))
    return {key: int(getattr(config, keys[key])) if key in keys else 0 for key in BERT14_SHAPE}


def classes(family: ModelFamily) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    """The transformers config and classifier classes the family names (bert14/family.py)."""
    return getattr(transformers, family.config_class), getattr(transformers, family.architecture)


def bert14_config(attn: str = "sdpa", **overrides: Any) -> PretrainedConfig:
    """BERT-14's config; overrides change the shape (the tests use tiny ones)."""
    shape = {**BERT14_SHAPE, **overrides}
    labels = shape.pop("labels", BERT14_LABELS)
    return _config(shape, list(labels), attn)


def _config(
    shape: dict[str, Any], labels: list[str], attn: str, family: ModelFamily = DEFAULT_FAMILY
) -> PretrainedConfig:
    if attn not in ATTN_IMPLEMENTATIONS:
        raise InputError(f"attention implementation: expected one of {ATTN_IMPLEMENTATIONS}, got {attn!r}")
    config_class, _ = classes(family)
    config = config_class(
        **shape,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )
    config._attn_implementation = attn
    return config


def build_seeded(config: PretrainedConfig, seed: int = DEFAULT_SEED) -> PreTrainedModel:
    """Same config + same seed -> the same weights, bit for bit (CPU, same torch version).

    Hugging Face's initializer sets every bias to 0 and every LayerNorm to (1, 0). Parity checks
    on such a model cannot see a dropped or misplaced bias, so each of those is then drawn from
    a small seeded normal too, as a trained model's would be.
    """
    generator = torch.Generator().manual_seed(seed)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = classes(family_for(config.model_type))[1](config)
    finally:
        torch.random.set_rng_state(generator_state)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * BIAS_STD)
            elif "LayerNorm" in name or "layer_norm" in name:  # DistilBERT: sa_layer_norm, output_layer_norm
                parameter.copy_(1.0 + torch.randn(parameter.shape, generator=generator) * LAYER_NORM_STD)
    return model.eval()


def build_default(seed: int = DEFAULT_SEED, attn: str = "sdpa", **overrides: Any) -> SourceModel:
    """The default BERT-14: untrained seeded weights and the generated vocabulary."""
    config = bert14_config(attn, **overrides)
    vocab = build_vocab()
    if config.vocab_size != len(vocab):
        # Tiny test configs use a prefix of the vocabulary: ids must stay below vocab_size.
        vocab = vocab[: config.vocab_size]
    shape = {key: getattr(config, key) for key in BERT14_SHAPE}
    origin = {"kind": "default", "seed": seed, "shape": shape, "labels": list(BERT14_LABELS)}
    if "labels" in overrides:
        origin["labels"] = list(overrides["labels"])
    return SourceModel(build_seeded(config, seed), vocab, TokenizerSettings(), origin)


def rebuild(origin: dict[str, Any], attn: str, model_dir: Path | None = None) -> SourceModel:
    """The source model a manifest's `source` entry describes (for parity checks after export).

    A checkpoint is read again from where it was exported, or from `model_dir` (it moved, or the
    artifact did); either way its files must be the ones exported, by sha256, or the parity
    figures would be against another model.
    """
    if origin.get("kind") == "default":
        if model_dir is not None:
            raise InputError("the artifact was exported from the default model (seeded weights), not a checkpoint")
        shape, seed, labels = _default_origin(origin)
        return build_default(seed, attn, labels=labels, **shape)
    if origin.get("kind") == "checkpoint":
        recorded, files = origin.get("path"), origin.get("files", {})
        if not isinstance(recorded, str) or not isinstance(files, dict):
            raise ArtifactError("manifest source (a checkpoint): expected its path and a table of its files' sha256")
        directory = Path(model_dir if model_dir is not None else recorded)
        if not directory.is_dir():
            raise InputError(
                f"{directory}: the checkpoint this artifact was exported from is not there; "
                "pass its directory (`bert14 check ARTIFACT --model DIR`)"
            )
        source = load_checkpoint(directory, attn)
        _same_files(files, source.origin["files"], directory)
        return source
    raise InputError(f"manifest source: expected kind 'default' or 'checkpoint', got {origin.get('kind')!r}")


def _default_origin(origin: dict[str, Any]) -> tuple[dict[str, int], int, list[str]]:
    """The default model's shape, seed and labels as the manifest's source records them, checked before
    anything is built: never larger than BERT-14 (a tampered shape must not allocate gigabytes)."""
    shape, seed, labels = origin.get("shape"), origin.get("seed"), origin.get("labels")
    where = "manifest source (the default model)"
    if not isinstance(shape, dict) or set(shape) != set(BERT14_SHAPE):
        raise ArtifactError(f"{where}: expected a shape of {', '.join(BERT14_SHAPE)}, found {shown(shape)}")
    for key, value in shape.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= BERT14_SHAPE[key]:
            raise ArtifactError(f"{where}: expected {key} from 1 to {BERT14_SHAPE[key]}, found {shown(value)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 63:
        raise ArtifactError(f"{where}: expected an integer seed, found {shown(seed)}")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise ArtifactError(f"{where}: expected a list of labels, found {shown(labels)}")
    return dict(shape), seed, list(labels)


def _same_files(exported: dict[str, str], found: dict[str, str], directory: Path) -> None:
    for name, digest in exported.items():
        if name not in found:
            raise InputError(f"{directory}: expected {name}, the file the artifact was exported from, found none")
        if found[name] != digest:
            raise InputError(
                f"{directory / name}: not the file this artifact was exported from (sha256 {found[name][:12]}..., "
                f"exported {digest[:12]}...); re-export, or point --model at the original checkpoint"
            )


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Pre-2019 checkpoints name LayerNorm parameters after TensorFlow's gamma/beta.
_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}
# Buffers that transformers recreates itself; their presence or absence in a file is harmless.
_IGNORED_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")


def load_checkpoint(directory: Path, attn: str = "sdpa") -> SourceModel:
    """A local Hugging Face classifier directory of a supported family (bert14/family.py), any size and label count."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: expected a checkpoint directory (config.json, model.safetensors, vocab.txt)")
    config = _read_config(directory / "config.json", attn)
    state, weights_path = _read_weights(directory)
    # The config is held against the weights before the model is built: a config.json of 10^6 hidden
    # units or 10^4 layers beside small weights would otherwise allocate gigabytes first.
    renamed = _renamed(state)
    _check_layer_count(config, renamed, weights_path)
    _check_fit(_expected_shapes(config), renamed, weights_path, type(config).__name__)
    model = classes(family_for(config.model_type))[1](config).eval()
    _load_state(model, renamed)
    family = family_for(config.model_type)
    if family.tokenizer == "WordPiece":
        vocab_path, vocab, settings = _read_tokenizer(directory)
        copied: dict[str, bytes] = {}
    else:
        vocab_path, vocab, settings, copied = _read_json_tokenizer(directory, family)
    if len(vocab) > config.vocab_size:
        raise InputError(
            f"{vocab_path}: expected token ids below vocab_size={config.vocab_size} (config.json), found ids up to "
            f"{len(vocab) - 1}; the vocabulary does not belong to this model"
        )
    files = {path.name: sha256_file(path) for path in (directory / "config.json", weights_path, vocab_path)}
    origin = {"kind": "checkpoint", "path": str(directory.resolve()), "files": files}
    return SourceModel(model, vocab, settings, origin, copied)


def _read_json_tokenizer(
    directory: Path, family: ModelFamily
) -> tuple[Path, list[str], TokenizerSettings, dict[str, bytes]]:
    """A tokenizer.json family's tokenizer, read by the runtime's own reader (so what exports is what
    serves), and its files to carry into the artifact as they are."""
    from bert14.tokenizer import TOKENIZER_CONFIG_FILE, load_tokenizer

    path = directory / TOKENIZER_JSON_FILE
    if not path.is_file():
        raise InputError(f"{directory}: expected {family.model_type}'s {family.tokenizer} tokenizer as tokenizer.json, "
                         "found none (save it with the model's tokenizer class, save_pretrained)")  # fmt: skip
    try:
        tokenizer, settings = load_tokenizer(directory, family)
    except ArtifactError as exc:  # the runtime's reader: here it is the user's input
        raise InputError(str(exc)) from exc
    ids = tokenizer.get_vocab(with_added_tokens=True)
    vocab = [""] * (max(ids.values(), default=-1) + 1)  # by id: a gap or an id past the model's shows in its length
    for token, index in ids.items():
        vocab[index] = token
    names = [TOKENIZER_JSON_FILE] + [TOKENIZER_CONFIG_FILE] * (directory / TOKENIZER_CONFIG_FILE).is_file()
    return path, vocab, settings, {name: (directory / name).read_bytes() for name in names}


def _read_tokenizer(directory: Path) -> tuple[Path, list[str], TokenizerSettings]:
    """vocab.txt (+ tokenizer_config.json), or, as transformers 5 saves it, tokenizer.json alone."""
    vocab_path, json_path = directory / VOCAB_FILE, directory / TOKENIZER_JSON_FILE
    try:
        if vocab_path.is_file():
            added = directory / "added_tokens.json"
            if added.is_file() and read_json_object(added, InputError, "added tokens"):
                raise InputError(f"{added}: tokens added outside the WordPiece vocabulary are not supported")
            tokens, settings = read_vocab(vocab_path), read_settings(directory)
            build_tokenizer(tokens, settings, vocab_path)  # its special tokens are there: refused now, named
            return vocab_path, tokens, settings
        if json_path.is_file():
            tokens, settings = read_tokenizer_json(directory)
            build_tokenizer(tokens, settings, json_path)
            return json_path, tokens, settings
    except ArtifactError as exc:  # the runtime's readers: here it is the user's input
        raise InputError(str(exc)) from exc
    raise InputError(
        f"{directory}: expected the WordPiece vocabulary as vocab.txt (one token a line) or tokenizer.json, "
        "found neither"
    )


def _read_config(path: Path, attn: str) -> PretrainedConfig:
    if not path.is_file():
        raise InputError(f"{path}: expected the model's config.json, file is missing")
    raw = read_json_object(path, InputError, "a Hugging Face model config")
    family = family_for(raw.get("model_type"), str(path))
    keys = shape_keys(family)
    missing = [key for key in keys.values() if not isinstance(raw.get(key), int) or isinstance(raw.get(key), bool)]
    if missing:
        raise InputError(f"{path}: expected integer fields {', '.join(missing)}")
    small = [key for key in keys.values() if not 1 <= raw[key] <= MAX_SIZE]
    if small:
        raise InputError(f"{path}: expected {', '.join(small)} from 1 to {MAX_SIZE}, found "
                         f"{', '.join(shown(raw[key]) for key in small)}")  # fmt: skip
    eps = raw.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
        raise InputError(f"{path}: expected layer_norm_eps a number between 0 and 1, found {shown(eps)}")
    pad, vocab_size = raw.get("pad_token_id"), raw[keys["vocab_size"]]
    if pad is not None and (isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < vocab_size):
        raise InputError(f"{path}: expected pad_token_id null or an id from 0 to {vocab_size - 1} (vocab_size), "
                         f"found {shown(pad)}")  # fmt: skip
    hidden, heads = raw[keys["hidden_size"]], raw[keys["num_attention_heads"]]
    if heads <= 0 or hidden % heads:
        raise InputError(f"{path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    hidden_act = raw.get(family.activation_key, "gelu")
    if hidden_act not in GELU_ACTIVATIONS:
        raise InputError(
            f"{path}: expected {family.activation_key} one of {list(GELU_ACTIVATIONS)} (GELU, erf or tanh form), "
            f"found {hidden_act!r}"
        )
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise InputError(f"{path}: expected absolute position embeddings, as {family.architecture} uses by default")
    id2label = raw.get("id2label")
    num_labels = raw.get("num_labels", len(id2label) if isinstance(id2label, dict) else 2)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or not 1 <= num_labels <= MAX_LABELS:
        raise InputError(f"{path}: expected num_labels a whole number from 1 to {MAX_LABELS}, found "
                         f"{shown(num_labels)}")  # fmt: skip
    if isinstance(id2label, dict) and len(id2label) != num_labels:
        raise InputError(f"{path}: num_labels {num_labels} and id2label's {len(id2label)} labels disagree")
    if isinstance(id2label, dict):
        try:
            labels = [str(id2label[str(i)]) for i in range(len(id2label))]
        except KeyError as exc:
            raise InputError(f"{path}: expected id2label keys 0..{len(id2label) - 1}, missing {exc}") from exc
    else:
        labels = [f"LABEL_{i}" for i in range(num_labels)]
    repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
    if repeated:
        raise InputError(f"{path}: expected a different name for each label in id2label, found "
                         f"{', '.join(map(repr, repeated[:5]))} more than once (a prediction's scores are keyed "
                         "by label)")  # fmt: skip
    problem_type = raw.get("problem_type")
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise InputError(
            f"{path}: expected problem_type null or one of {sorted(PROBLEM_TYPES)}, found {problem_type!r}"
        )
    if problem_type == "single_label_classification" and len(labels) < 2:
        raise InputError(
            f"{path}: problem_type 'single_label_classification' needs 2 or more labels, found {len(labels)}; "
            "one output is 'multi_label_classification' (a sigmoid) or 'regression'"
        )
    if family is DEFAULT_FAMILY:
        shape = {key: raw[key] for key in BERT14_SHAPE}
        config = _config(shape, labels, attn, family)
        config.hidden_act = hidden_act
        config.layer_norm_eps = float(raw.get("layer_norm_eps", 1e-12))
        config.pad_token_id = raw.get("pad_token_id", 0)
    else:
        config = _family_config(path, raw, labels, attn, family)
    config.problem_type = problem_type
    return config


# config.json keys that are not the model's settings, or that the labels set here.
_NOT_SETTINGS = ("architectures", "transformers_version", "model_type", "id2label", "label2id", "num_labels",
                 "problem_type", "torch_dtype", "dtype", "_name_or_path")  # fmt: skip


def _family_config(
    path: Path, raw: dict[str, Any], labels: list[str], attn: str, family: ModelFamily
) -> PretrainedConfig:
    """The family's config from its config.json, as transformers reads it (its own defaults and checks)."""
    if attn not in ATTN_IMPLEMENTATIONS:
        raise InputError(f"attention implementation: expected one of {ATTN_IMPLEMENTATIONS}, got {attn!r}")
    config_class, _ = classes(family)
    settings = {key: value for key, value in raw.items() if key not in _NOT_SETTINGS}
    try:
        config = config_class(
            **settings,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
    except (TypeError, ValueError, StrictDataclassError) as exc:  # transformers' checks of the fields
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{path}: not a valid {family.config_class} ({detail})") from exc
    config._attn_implementation = attn
    offset = family.position_offset(config.pad_token_id)
    if config.max_position_embeddings <= offset + 2:
        raise InputError(f"{path}: max_position_embeddings {config.max_position_embeddings} leaves no room for "
                         f"a text after the {offset} rows {family.architecture} reserves")  # fmt: skip
    return config


def _read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    path = next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)
    if path is None:
        raise InputError(f"{directory}: expected model.safetensors or pytorch_model.bin, found neither")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            # weights_only: a pickle from a stranger must not run code on load.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # each library raises its own types for a damaged file
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: expected a readable weights file, could not load it ({detail})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a mapping of parameter names to tensors")
    return state, path


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, tensor in state.items():
        for old, new in _LEGACY_SUFFIXES.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        renamed[key] = tensor
    return renamed


# A transformer layer's parameters in every family's state dict: encoder.layer.N. (BERT, RoBERTa,
# ELECTRA, ERNIE), transformer.layer.N. (DistilBERT).
_LAYER_KEY = re.compile(r"\.layer\.(\d+)\.")


def _check_layer_count(config: PretrainedConfig, state: dict[str, torch.Tensor], path: Path) -> None:
    """config.json's layer count against the layers the weights hold, before anything is built."""
    layers = {int(m[1]) for key in state if (m := _LAYER_KEY.search(key))}
    declared = config_shape(config)["num_hidden_layers"]
    if layers and declared != len(layers):
        key = shape_keys(family_for(config.model_type))["num_hidden_layers"]
        raise InputError(f"{path}: weights do not fit config.json: it says {key} {declared}, the weights hold "
                         f"{len(layers)} layers")  # fmt: skip


def _expected_shapes(config: PretrainedConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape in the model `config` describes, from a model on the meta device: shapes
    without storage, so an oversized config costs nothing."""
    with torch.device("meta"):
        model = classes(family_for(config.model_type))[1](config)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def _check_fit(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    missing = [k for k in expected if k not in state and not k.endswith(_IGNORED_KEYS)]
    unexpected = [k for k in state if k not in expected and not k.endswith(_IGNORED_KEYS)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        raise InputError(f"{path}: weights do not fit config.json's {what}: {'; '.join(parts)}")
    wrong = [k for k, t in state.items() if k in expected and tuple(t.shape) != expected[k]]
    if wrong:
        key = wrong[0]
        raise InputError(
            f"{path}: tensor {key} has shape {tuple(state[key].shape)}, config.json implies {expected[key]}"
        )


def _load_state(model: PreTrainedModel, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    usable = {k: v.float() for k, v in state.items() if k in expected}
    model.load_state_dict(usable, strict=False)
