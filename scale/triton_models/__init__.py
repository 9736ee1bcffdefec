"""The Python-backend models of the Triton repository `bert14 triton-repo` writes, each copied as a
model's `1/model.py`. Self-contained (numpy and tokenizers only, what a Triton container can pip
install); tests/scale/test_triton_repo.py checks them against bert14's own tokenizer and head."""
