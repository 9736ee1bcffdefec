# bert14: `make export` builds the default artifact, `make test` runs the test suite.
# Both create .venv and install the pinned requirements first when it is missing or stale.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bert14-installed

MODEL ?=
OUT ?= artifacts/bert14
EXPORTER ?= dynamo
ATTN ?= sdpa
OPSET ?= 18
PYTEST_ARGS ?=
EXPORT_ARGS ?=

EXPORT_FLAGS := --out "$(OUT)" --exporter $(EXPORTER) --attn $(ATTN) --opset $(OPSET)
ifneq ($(strip $(MODEL)),)
EXPORT_FLAGS += --model "$(MODEL)"
endif

.PHONY: export test lint venv clean gpu-check gpu-profile check bench docs

export: $(STAMP)
	$(VENV)/bin/bert14 export $(EXPORT_FLAGS) $(EXPORT_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Speed side by side (PyTorch, ONNX Runtime unfused, bert14 fused/INT8, the public recipe):
# a table, bench-results/bench.json and bench-results/bench.png.
bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench.py "$(OUT)" --out bench-results

# docs/numbers.md's generated sections and README's headline table, from docs/results/*.json
# (re-run a benchmark with --out/--json docs/results first).
docs: $(STAMP)
	$(PY) docs/numbers_page.py

# Every artifact in OUT against the PyTorch source, by sequence-length bucket.
check: $(STAMP)
	$(VENV)/bin/bert14 check "$(OUT)"

# On a machine with an NVIDIA GPU and onnxruntime-gpu: the fp32/fp16 artifacts on the CUDA
# provider against PyTorch, and their latency next to PyTorch fp16 and ONNX Runtime's recipe.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py "$(OUT)"

# Same machine: every CUDA kernel of a run of the fp16 artifacts and of the public configuration.
gpu-profile: $(STAMP)
	$(PY) benchmarks/gpu_profile.py "$(OUT)" --public

lint: $(STAMP)
	$(VENV)/bin/ruff check .

venv: $(STAMP)

# Stale when any requirements file or the project metadata changed since the last install;
# a venv whose interpreter no longer runs (moved, Python removed) is rebuilt from scratch.
$(STAMP): requirements/*.txt pyproject.toml
	@if ! $(PY) -c "import sys" >/dev/null 2>&1; then rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
