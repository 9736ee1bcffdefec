"""Seeded checkpoints of every supported family, written as `save_pretrained` writes them.

A user brings a directory that transformers wrote: config.json, model.safetensors and the files its
tokenizer class saves (tokenizer.json, tokenizer_config.json; vocab.txt where the class is WordPiece's).
The tests (tiny shapes) and the family benchmark (base shapes) build such directories in code, with
seeded weights and a tokenizer made here, so that every family goes through exactly the path a
user's checkpoint takes (`bert14 export --model DIR`), with nothing downloaded.

Tokenizers: WordPiece families get the default model's generated vocabulary (export/vocab.py);
RoBERTa's byte-level BPE and XLM-R's SentencePiece Unigram are trained by the `tokenizers` library on
the given texts, then handed to transformers' own tokenizer class to save.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from bert14.errors import InputError
from bert14.export.model import RENAMED_KEYS, build_seeded, classes
from bert14.export.vocab import build_vocab
from bert14.family import ModelFamily, family_for

# Base-size shapes, as the public base checkpoints of each family have them (positions: tokens a row holds).
BASE_SHAPES: dict[str, dict[str, Any]] = {
    "bert": {"vocab_size": 21128, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "positions": 512, "type_vocab_size": 2},
    "roberta": {"vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "positions": 512, "type_vocab_size": 1},
    "xlm-roberta": {"vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                    "intermediate_size": 3072, "positions": 512, "type_vocab_size": 1},
    "distilbert": {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12,
                   "intermediate_size": 3072, "positions": 512},
    # hfl/chinese-electra-180g-base-discriminator's shape
    "electra": {"vocab_size": 21128, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "positions": 512, "type_vocab_size": 2, "embedding_size": 768},
    # nghuyong/ernie-3.0-base-zh's shape
    "ernie": {"vocab_size": 40000, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
              "intermediate_size": 3072, "positions": 2048, "type_vocab_size": 4, "use_task_id": True,
              "task_type_vocab_size": 3},
}  # fmt: skip
# What each family's public checkpoints use for special tokens and padding.
# RoBERTa's and XLM-R's specials, at the ids their public checkpoints give them (<s> 0, <pad> 1, </s> 2, <unk> 3).
_SENTENCE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


# The seeded corpus: common CJK ideographs and ASCII words, the mix of Chinese news text.
_CORPUS_CHARS = [chr(code) for code in range(0x4E00, 0x4E00 + 800)]
_CORPUS_WORDS = ["the", "news", "market", "NBA", "iPhone", "2026", "GDP", "3.5%", "CEO", "A股", "U23", "5G"]


def seeded_corpus(seed: int = 14, texts: int = 1500) -> list[str]:
    """Texts to train a tiny tokenizer on, the same for the same seed."""
    rng = np.random.default_rng(seed)
    corpus = []
    for _ in range(texts):
        parts = []
        for _ in range(int(rng.integers(3, 12))):
            if rng.random() < 0.25:
                parts.append(" " + str(rng.choice(_CORPUS_WORDS)) + " ")
            else:
                parts.append("".join(rng.choice(_CORPUS_CHARS[: int(rng.integers(40, 800))], int(rng.integers(1, 5)))))
        corpus.append("".join(parts).strip() + str(rng.choice(["。", "！", "？", "", "…"])))
    return corpus


def config_for(family: ModelFamily, shape: dict[str, Any], labels: list[str]) -> transformers.PretrainedConfig:
    """The family's config for a canonical `shape` (BERT's key names; `positions`: tokens a row holds)."""
    shape = dict(shape)
    pad = 1 if family.positions_after_padding else 0  # RoBERTa's <pad>, which its positions count from
    positions = shape.pop("positions") + family.position_offset(pad)
    renamed = RENAMED_KEYS.get(family.model_type, {})
    values = {renamed.get(key, key): value for key, value in shape.items()}
    values["max_position_embeddings"] = positions
    if family.positions_after_padding:
        values |= {"bos_token_id": 0, "eos_token_id": 2}
    config_class, _ = classes(family)
    config = config_class(
        **values,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=pad,
    )
    return config


def seeded_model(config: transformers.PretrainedConfig, seed: int, head_scale: float = 1.0) -> torch.nn.Module:
    """The family's classifier with seeded weights; biases and LayerNorms drawn too (a parity check
    cannot see a dropped bias that is 0). `head_scale` widens the classifier's last layer so its
    logits are not near ties (INT8 agreement on untrained weights says nothing otherwise)."""
    model = build_seeded(config, seed)
    with torch.no_grad():
        last = [p for n, p in model.named_parameters() if n.endswith("weight")][-1]  # the head's output layer
        last.mul_(head_scale)
    return model.eval()


def write_tokenizer(family: ModelFamily, directory: Path, vocab_size: int, texts: Iterable[str]) -> None:
    """The family's tokenizer files, saved by its transformers class, with at most vocab_size tokens."""
    tokenizer_class = getattr(transformers, family.tokenizer_class)
    if family.tokenizer == "WordPiece":
        tokens = build_vocab()[:vocab_size]
        tokenizer = tokenizer_class(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    elif family.tokenizer == "BPE":
        model = _train(models.BPE(), pre_tokenizers.ByteLevel(add_prefix_space=False), None, texts, vocab_size - 1,
                       trainers.BpeTrainer, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        vocab = dict(model["vocab"])  # the specials first (ids 0..3), as the trainer placed them
        vocab["<mask>"] = len(vocab)  # RoBERTa's mask token is its last id
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
        tokenizer = tokenizer_class(vocab=vocab, merges=merges)
    elif family.tokenizer == "Unigram":
        spaces = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
        model = _train(models.Unigram(), spaces, normalizers.NFKC(), texts, vocab_size - 1, trainers.UnigramTrainer,
                       unk_token="<unk>")  # fmt: skip
        pieces = [(piece, score) for piece, score in model["vocab"]] + [("<mask>", 0.0)]
        tokenizer = tokenizer_class(vocab=pieces)
    else:
        raise InputError(f"{family.model_type}: no tokenizer builder for the {family.tokenizer} kind")
    tokenizer.save_pretrained(str(directory))


def _train(model, pre_tokenizer, normalizer, texts, vocab_size, trainer_class, **options) -> dict[str, Any]:  # noqa: ANN001
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizer
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    trainer = trainer_class(
        vocab_size=vocab_size, special_tokens=list(_SENTENCE_SPECIALS), show_progress=False, **options
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    return json.loads(tokenizer.to_str())["model"]


def seeded_checkpoint(
    model_type: str,
    directory: Path,
    shape: dict[str, Any],
    labels: list[str],
    texts: Iterable[str],
    seed: int = 14,
    attn: str = "sdpa",
    head_scale: float = 1.0,
    tokenizer_vocab: int | None = None,
) -> Path:
    """A checkpoint directory of `model_type` as save_pretrained writes it (config, weights, tokenizer).
    `tokenizer_vocab`: at most this many tokens in a trained tokenizer (the config's vocab_size may be
    larger, as XLM-R's 250,002 rows are for a corpus far larger than a benchmark's)."""
    family = family_for(model_type)
    config = config_for(family, shape, labels)
    config._attn_implementation = attn
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    seeded_model(config, seed, head_scale).save_pretrained(str(directory))
    write_tokenizer(family, directory, min(config.vocab_size, tokenizer_vocab or config.vocab_size), texts)
    return directory
