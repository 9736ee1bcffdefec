from __future__ import annotations

from bert14.export.vocab import SPECIAL_TOKENS, VOCAB_SIZE, build_vocab
from bert14.tokenizer import TokenizerSettings, build_tokenizer, read_vocab, write_tokenizer_files


def test_vocab_has_bert_base_chinese_size_and_special_ids() -> None:
    tokens = build_vocab()
    assert len(tokens) == VOCAB_SIZE == 21128
    assert len(set(tokens)) == VOCAB_SIZE
    for token, index in SPECIAL_TOKENS.items():
        assert tokens[index] == token
    assert all(token and not any(ch.isspace() for ch in token) for token in tokens)


def test_vocab_is_the_same_in_every_interpreter_and_covers_news_text() -> None:
    """The default model's artifact must be byte-identical run to run: the vocabulary may not
    depend on set or dict order, which changes with the interpreter's hash seed."""
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import hashlib; from bert14.export.vocab import build_vocab; "
        "print(hashlib.sha256('\\n'.join(build_vocab()).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }  # fmt: skip
    assert digests == {hashlib.sha256("\n".join(build_vocab()).encode()).hexdigest()}
    tokenizer = build_tokenizer(build_vocab(), TokenizerSettings())
    encoding = tokenizer.encode("央行宣布降准0.5个百分点，释放长期资金约1万亿元。")
    assert SPECIAL_TOKENS["[UNK]"] not in encoding.ids
    assert encoding.ids[0] == SPECIAL_TOKENS["[CLS]"] and encoding.ids[-1] == SPECIAL_TOKENS["[SEP]"]


def test_written_vocab_reads_back_identically(tmp_path) -> None:
    tokens = build_vocab()
    write_tokenizer_files(tmp_path, tokens, TokenizerSettings())
    assert read_vocab(tmp_path / "vocab.txt") == tokens
    assert (tmp_path / "tokenizer.json").is_file()
