"""The embeddable runtime: numpy, onnxruntime and tokenizers only (no torch, no transformers).

from bert14.runtime import Classifier
clf = Classifier.load("artifacts/bert14", precision="int8", provider="cpu", threads=2)
for p in clf.predict(["央行宣布降准0.5个百分点"]):
    print(p.label, p.score)
"""

from __future__ import annotations

from bert14.runtime.classifier import Classifier, LoadOptions, Prediction

__all__ = ["Classifier", "LoadOptions", "Prediction"]
