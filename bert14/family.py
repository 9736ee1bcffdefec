"""Model families: what every stage needs to know about one kind of checkpoint, declared once.

A family is keyed by config.json's `model_type`. Export builds the model from its transformers
classes and names the graph's inputs after it; the manifest records it (`model.model_type`); the
runtime, the parity reference and the Triton repository read the inputs from it; the fusion gate
expects its fused ops; the runtime reads its tokenizer through the reader of its kind
(bert14/tokenizer.py's READERS) and verifies the support files it declares. Supporting another
family starts with one entry in FAMILIES and then the code its differences need (positions, head, a
tokenizer reader), each in its stage.

The core never imports transformers: classes are named here and looked up by the export stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    # RoBERTa's positions start after padding_idx: the first pad_token_id + 1 rows of the position
    # table are never a real token's, so a text holds that many fewer tokens than max_position_embeddings.
    positions_after_padding: bool = False
    activation_key: str = "hidden_act"  # config.json's key for the FFN activation (DistilBERT: "activation")
    # The transformers tokenizer class save_pretrained names in tokenizer_config.json for this family.
    tokenizer_class: str = "BertTokenizer"

    def position_offset(self, pad_token_id: int | None) -> int:
        """Rows of the position table before the first token's (RoBERTa: padding_idx + 1)."""
        return (pad_token_id or 0) + 1 if self.positions_after_padding else 0

    @property
    def segments(self) -> bool:
        """Whether the model takes token types (a sentence pair's second text is type 1)."""
        return "token_type_ids" in self.input_names


_WORDPIECE_FILES = ("vocab.txt", "tokenizer.json")
_WORDPIECE_SUPPORT = ("vocab.txt", "tokenizer_config.json", "tokenizer.json", "config.json")
_JSON_SUPPORT = ("tokenizer_config.json", "tokenizer.json", "config.json")
_ENCODER_OPS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization")
_BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_POOLER = "pooler: dense + tanh on the first token, then a linear classifier"
_FROM_PADDING = "absolute, padding_idx+1.. counted over the row's non-pad tokens (pads get padding_idx)"

BERT = ModelFamily(
    model_type="bert",
    architecture="BertForSequenceClassification",
    config_class="BertConfig",
    input_names=_BERT_INPUTS,
    tokenizer="WordPiece",
    tokenizer_files=_WORDPIECE_FILES,
    support_files=_WORDPIECE_SUPPORT,
    positions="absolute, 0..S-1 from the row's first token (padding on the right)",
    head=_POOLER,
    fused_ops=_ENCODER_OPS,
)
ROBERTA = ModelFamily(
    model_type="roberta",
    architecture="RobertaForSequenceClassification",
    config_class="RobertaConfig",
    input_names=("input_ids", "attention_mask"),
    tokenizer="BPE",
    tokenizer_files=("tokenizer.json",),
    support_files=_JSON_SUPPORT,
    positions=_FROM_PADDING,
    head="dense + tanh on <s>, then out_proj",
    fused_ops=_ENCODER_OPS,
    positions_after_padding=True,
    tokenizer_class="RobertaTokenizer",
)
# XLM-R is RoBERTa's architecture with a SentencePiece Unigram tokenizer.
XLM_ROBERTA = replace(
    ROBERTA,
    model_type="xlm-roberta",
    architecture="XLMRobertaForSequenceClassification",
    config_class="XLMRobertaConfig",
    tokenizer="Unigram",
    tokenizer_class="XLMRobertaTokenizer",
)
# The other WordPiece families are BERT but for what each entry names.
DISTILBERT = replace(
    BERT,
    model_type="distilbert",
    architecture="DistilBertForSequenceClassification",
    config_class="DistilBertConfig",
    input_names=("input_ids", "attention_mask"),
    positions="absolute, 0..S-1 (no segment embeddings)",
    head="pre_classifier + ReLU on [CLS], then a linear classifier (no pooler)",
    activation_key="activation",
    tokenizer_class="DistilBertTokenizer",
)
ELECTRA = replace(
    BERT,
    model_type="electra",
    architecture="ElectraForSequenceClassification",
    config_class="ElectraConfig",
    positions="absolute, 0..S-1; embeddings projected to hidden_size when embedding_size differs",
    head="dense + GELU on [CLS], then out_proj",
    tokenizer_class="ElectraTokenizer",
)
ERNIE = replace(
    BERT,
    model_type="ernie",
    architecture="ErnieForSequenceClassification",
    config_class="ErnieConfig",
    positions="absolute, 0..S-1; with use_task_id, task type 0's embedding (transformers' default) is added",
)

FAMILIES: dict[str, ModelFamily] = {
    family.model_type: family for family in (BERT, ROBERTA, XLM_ROBERTA, DISTILBERT, ELECTRA, ERNIE)
}
DEFAULT_FAMILY = BERT


def family_for(model_type: object, where: str = "config.json") -> ModelFamily:
    """The family of `model_type`, or an InputError that lists the supported ones."""
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        supported = ", ".join(f"'{name}' ({f.architecture})" for name, f in FAMILIES.items())
        raise InputError(f"{where}: model_type {model_type!r} is not supported; expected one of {supported}")
    return family
