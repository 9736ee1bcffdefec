"""Parity with the PyTorch source, written once: cases (the inputs), a reference (PyTorch),
runners (an artifact file on an engine) and a comparator (named tolerances). The export gate,
`bert14 check`, the INT8 fallback and the benchmarks all use these."""
