"""BERT WordPiece tokenization through the Rust `tokenizers` library.

Built from an artifact's vocab.txt and tokenizer settings so that its ids equal those of
transformers' BertTokenizer with the same settings (lower case, accents stripped, CJK
characters split, WordPiece with [UNK], 100-character word limit).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from bert14.artifact import TOKENIZER_CONFIG_FILE, TOKENIZER_JSON_FILE, VOCAB_FILE
from bert14.errors import ArtifactError
from bert14.family import DEFAULT_FAMILY, ModelFamily
from bert14.jsonfile import read_json_object

# BertTokenizer's WordpieceTokenizer turns longer words into [UNK] whole.
MAX_INPUT_CHARS_PER_WORD = 100


@dataclass(frozen=True)
class TokenizerSettings:
    do_lower_case: bool = True
    strip_accents: bool | None = None  # None: follow do_lower_case, as BertTokenizer does
    tokenize_chinese_chars: bool = True
    model_max_length: int = 512
    unk_token: str = "[UNK]"
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"
    pad_token: str = "[PAD]"
    mask_token: str = "[MASK]"

    @classmethod
    def from_config(cls, raw: dict[str, object]) -> TokenizerSettings:
        known = {name for name in cls.__dataclass_fields__}
        values = {k: v for k, v in raw.items() if k in known}
        for key, value in values.items():
            if key.endswith("_token") and isinstance(value, dict):  # older files store AddedToken objects
                values[key] = value.get("content")
        max_length = values.get("model_max_length")
        if not isinstance(max_length, int) or max_length <= 0 or max_length > 1_000_000:
            values.pop("model_max_length", None)  # HF writes a huge sentinel when unset
        return cls(**values)  # type: ignore[arg-type]

    def to_config(self) -> dict[str, object]:
        return {"tokenizer_class": "BertTokenizer", **asdict(self)}


def read_vocab(path: Path) -> list[str]:
    """Tokens of a vocab.txt, split on '\\n' only (some vocabularies hold U+2028)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: expected a WordPiece vocabulary, file is missing") from exc
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path}: expected UTF-8 text, one token a line ({exc})") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [line.rstrip("\r") for line in lines]
    if not tokens:
        raise ArtifactError(f"{path}: expected one token a line, the file is empty")
    return tokens


def build_tokenizer(tokens: list[str], settings: TokenizerSettings, where: str | Path = VOCAB_FILE) -> Tokenizer:
    """BERT's WordPiece pipeline over `tokens`; `where`: the vocabulary's file, for messages."""
    # BertTokenizer fills a dict in file order, so a repeated token keeps its last id.
    vocab = {token: index for index, token in enumerate(tokens)}
    for name in ("unk_token", "cls_token", "sep_token", "pad_token"):
        special = getattr(settings, name)
        if special not in vocab:
            raise ArtifactError(f"{where}: expected the special token {special!r} ({name}, from "
                                f"{TOKENIZER_CONFIG_FILE} or its default) in the vocabulary, it is absent")  # fmt: skip
    tokenizer = Tokenizer(
        WordPiece(vocab, unk_token=settings.unk_token, max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD)
    )
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=settings.tokenize_chinese_chars,
        strip_accents=settings.strip_accents,
        lowercase=settings.do_lower_case,
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab[settings.cls_token], vocab[settings.sep_token]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{settings.cls_token} $A {settings.sep_token}",
        pair=f"{settings.cls_token} $A {settings.sep_token} $B:1 {settings.sep_token}:1",
        special_tokens=[(settings.cls_token, cls_id), (settings.sep_token, sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
    # transformers' BertTokenizer maps a special token written inside a text ("a[SEP]b") to its id,
    # matched case-sensitively before normalization; without this the runtime would split it into
    # "[", "sep", "]".
    specials = (settings.pad_token, settings.unk_token, settings.cls_token, settings.sep_token, settings.mask_token)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials if t in vocab])
    return tokenizer


def read_tokenizer_json(directory: Path) -> tuple[list[str], TokenizerSettings]:
    """The vocabulary and settings of a BERT WordPiece tokenizer.json, which is all transformers 5
    writes (it no longer writes vocab.txt). tokenizer_config.json, when present, must agree with it.
    Anything that is not BERT's WordPiece pipeline, or tokens added outside the vocabulary, is
    refused: this runtime would tokenize them differently."""
    path = directory / TOKENIZER_JSON_FILE
    raw = read_json_object(path, ArtifactError, "a Hugging Face tokenizer")
    model, normalizer = raw.get("model") or {}, raw.get("normalizer") or {}
    pre_tokenizer = raw.get("pre_tokenizer") or {}
    found = (model.get("type"), normalizer.get("type"), pre_tokenizer.get("type"))
    if found != ("WordPiece", "BertNormalizer", "BertPreTokenizer") or model.get("continuing_subword_prefix") != "##":
        raise ArtifactError(
            f"{path}: expected BERT's tokenizer (WordPiece with '##', BertNormalizer, BertPreTokenizer), "
            f"found model/normalizer/pre-tokenizer {found}"
        )
    if model.get("max_input_chars_per_word", MAX_INPUT_CHARS_PER_WORD) != MAX_INPUT_CHARS_PER_WORD:
        raise ArtifactError(f"{path}: expected max_input_chars_per_word {MAX_INPUT_CHARS_PER_WORD}")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ArtifactError(f"{path}: expected a WordPiece vocabulary with ids 0..N-1")
    tokens = [""] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    added = [t.get("content") for t in raw.get("added_tokens") or [] if vocab.get(t.get("content")) != t.get("id")]
    if added:
        raise ArtifactError(f"{path}: tokens added outside the WordPiece vocabulary are not supported: {added[:5]}")
    from_json = {
        "do_lower_case": bool(normalizer.get("lowercase", True)),
        "strip_accents": normalizer.get("strip_accents"),
        "tokenize_chinese_chars": bool(normalizer.get("handle_chinese_chars", True)),
        "unk_token": model.get("unk_token", "[UNK]"),
    }
    config_path = directory / TOKENIZER_CONFIG_FILE
    config = read_json_object(config_path, ArtifactError, "tokenizer settings") if config_path.is_file() else {}
    settings = TokenizerSettings.from_config(config)
    for key, value in from_json.items():
        if key in config and getattr(settings, key) != value:
            raise ArtifactError(f"{config_path}: {key} is {config[key]!r}, but {path.name} says {value!r}")
    return tokens, TokenizerSettings.from_config({**config, **from_json})


def read_settings(directory: Path) -> TokenizerSettings:
    path = directory / TOKENIZER_CONFIG_FILE
    if not path.is_file():
        return TokenizerSettings()
    return TokenizerSettings.from_config(read_json_object(path, ArtifactError, "tokenizer settings"))


def _wordpiece(directory: Path) -> tuple[Tokenizer, TokenizerSettings]:
    """BERT's WordPiece tokenizer from vocab.txt + tokenizer_config.json."""
    settings = read_settings(directory)
    return build_tokenizer(read_vocab(directory / VOCAB_FILE), settings, directory / VOCAB_FILE), settings


# The special tokens of the tokenizer.json kinds, as RoBERTa's and XLM-R's tokenizer classes default them.
_SENTENCE_SPECIALS = {"unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
                      "mask_token": "<mask>"}  # fmt: skip
# What each kind's tokenizer.json must hold: its model, and the pre-tokenizer its transformers class uses.
_JSON_KINDS = {
    "BPE": ("BPE", ("ByteLevel",)),  # RobertaTokenizer: byte-level BPE
    "Unigram": ("Unigram", ("Metaspace", "Sequence")),  # XLMRobertaTokenizer: SentencePiece Unigram
}


def _from_json(kind: str) -> Callable[[Path], tuple[Tokenizer, TokenizerSettings]]:
    """The reader of a tokenizer.json of `kind`, read as written (the pipeline transformers 5 saved and
    loads back); tokenizer_config.json, when present, names the special tokens and model_max_length."""

    def read(directory: Path) -> tuple[Tokenizer, TokenizerSettings]:
        path = directory / TOKENIZER_JSON_FILE
        raw = read_json_object(path, ArtifactError, "a Hugging Face tokenizer")
        model_type, pre_tokenizers_allowed = _JSON_KINDS[kind]
        found = ((raw.get("model") or {}).get("type"), (raw.get("pre_tokenizer") or {}).get("type"))
        if found[0] != model_type or found[1] not in pre_tokenizers_allowed:
            raise ArtifactError(f"{path}: expected a {kind} tokenizer (model {model_type}, pre-tokenizer one of "
                                f"{list(pre_tokenizers_allowed)}), found model/pre-tokenizer {found}")  # fmt: skip
        try:
            tokenizer = Tokenizer.from_str(json.dumps(raw))
        except Exception as exc:  # the Rust library's parse errors come as plain Exception
            raise ArtifactError(f"{path}: not a tokenizer the tokenizers library reads ({exc})") from exc
        tokenizer.no_padding()  # the runtime pads per bucket itself
        tokenizer.no_truncation()
        config_path = directory / TOKENIZER_CONFIG_FILE
        config = read_json_object(config_path, ArtifactError, "tokenizer settings") if config_path.is_file() else {}
        settings = TokenizerSettings.from_config({**_SENTENCE_SPECIALS, "do_lower_case": False, **config})
        for name in ("unk_token", "cls_token", "sep_token", "pad_token"):
            if tokenizer.token_to_id(getattr(settings, name)) is None:
                raise ArtifactError(f"{path}: expected the {name} {getattr(settings, name)!r} in the vocabulary")
        return tokenizer, settings

    return read


# The reader of each tokenizer kind a family names (ModelFamily.tokenizer): another kind is one entry.
READERS: dict[str, Callable[[Path], tuple[Tokenizer, TokenizerSettings]]] = {
    "WordPiece": _wordpiece,
    **{kind: _from_json(kind) for kind in _JSON_KINDS},
}


def load_tokenizer(directory: Path | str, family: ModelFamily = DEFAULT_FAMILY) -> tuple[Tokenizer, TokenizerSettings]:
    """The tokenizer of an artifact or checkpoint directory of `family` (bert14/family.py)."""
    reader = READERS.get(family.tokenizer)
    if reader is None:
        raise ArtifactError(f"{directory}: no reader for {family.model_type}'s {family.tokenizer} tokenizer; "
                            f"bert14/tokenizer.py reads {sorted(READERS)}")  # fmt: skip
    return reader(Path(directory))


def write_tokenizer_files(directory: Path, tokens: list[str], settings: TokenizerSettings) -> None:
    """vocab.txt, tokenizer_config.json and tokenizer.json, readable by transformers too."""
    (directory / VOCAB_FILE).write_text("\n".join(tokens) + "\n", encoding="utf-8", newline="\n")
    config = json.dumps(settings.to_config(), indent=2, ensure_ascii=False)
    (directory / TOKENIZER_CONFIG_FILE).write_text(config + "\n", encoding="utf-8")
    build_tokenizer(tokens, settings).save(str(directory / TOKENIZER_JSON_FILE))
