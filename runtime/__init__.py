"""The embeddable runtime: numpy, onnxruntime and tokenizers only (no torch, no transformers)."""
