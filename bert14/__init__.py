"""bert14: export, fuse, quantize and serve BERT text classifiers through ONNX Runtime.

The top-level package stays import-light: the stages live in ``bert14.export`` (torch),
``bert14.optimize`` (onnx graph work), ``bert14.quantize`` and ``bert14.runtime``
(numpy, onnxruntime, tokenizers only), and are imported by whoever needs them.
"""

from __future__ import annotations

from bert14 import privacy

__version__ = "0.1.0"

privacy.switch_off()  # before any stage imports onnxruntime or openvino (bert14/privacy.py)
