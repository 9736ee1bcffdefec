"""Model families: what every stage needs to know about one kind of checkpoint, declared once.

A family is keyed by config.json's `model_type`. Export builds the model from its transformers
classes and names the graph's inputs after it; the manifest records it (`model.model_type`); the
runtime, the parity reference and the Triton repository read the inputs from it; the fusion gate
expects its fused ops; the runtime reads its tokenizer through the reader of its kind
(bert14/tokenizer.py's READERS) and verifies the support files it declares. Supporting another
family (RoBERTa, DistilBERT, ...) starts with one entry in FAMILIES and then the code its differences
need (positions, head, a tokenizer reader), each in its stage.

The core never imports transformers: classes are named here and looked up by the export stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from bert14.errors import InputError


@dataclass(frozen=True)
class ModelFamily:
    model_type: str  # config.json's model_type
    architecture: str  # the transformers class of the classifier (`*ForSequenceClassification`)
    config_class: str  # the transformers class of its config
    # The exported graph's inputs, int64 (batch, sequence), in order; the runtime feeds exactly these.
    input_names: tuple[str, ...]
    tokenizer: str  # the `tokenizers` model its tokenizer.json uses; bert14/tokenizer.py's READERS has its reader
    tokenizer_files: tuple[str, ...]  # what a checkpoint may bring for it, in the order they are read
    # What its artifacts carry besides the models (tokenizer files, config.json); the runtime reads and
    # verifies every one (bert14/artifact.py names them).
    support_files: tuple[str, ...]
    positions: str  # how position ids are made
    head: str  # what the classifier reads and computes
    # Fused ops the gate expects per encoder (optimize/pipeline.py), besides the GELU op it detects.
    fused_ops: tuple[str, ...]


BERT = ModelFamily(
    model_type="bert",
    architecture="BertForSequenceClassification",
    config_class="BertConfig",
    input_names=("input_ids", "attention_mask", "token_type_ids"),
    tokenizer="WordPiece",
    tokenizer_files=("vocab.txt", "tokenizer.json"),
    support_files=("vocab.txt", "tokenizer_config.json", "tokenizer.json", "config.json"),
    positions="absolute, 0..S-1 from the row's first token (padding on the right)",
    head="pooler: dense + tanh on [CLS], then a linear classifier",
    fused_ops=("EmbedLayerNormalization", "Attention", "SkipLayerNormalization"),
)

FAMILIES: dict[str, ModelFamily] = {family.model_type: family for family in (BERT,)}
DEFAULT_FAMILY = BERT


def family_for(model_type: object, where: str = "config.json") -> ModelFamily:
    """The family of `model_type`, or an InputError that lists the supported ones."""
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        supported = ", ".join(f"'{name}' ({f.architecture})" for name, f in FAMILIES.items())
        raise InputError(f"{where}: model_type {model_type!r} is not supported; expected one of {supported}")
    return family
