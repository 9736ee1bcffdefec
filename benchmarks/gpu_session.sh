#!/usr/bin/env bash
# One call on a borrowed GPU machine that cannot download anything (../shared/device/README.md):
# unpack onnxruntime-gpu from the parts already copied to /tmp/parts, install this project
# beside it, export the default BERT-14 (fp32 + fp16, no INT8: the CUDA provider does not run
# it), then run `gpu_check.py` and `gpu_profile.py`, writing their JSON under $OUT.
#
#   bash benchmarks/gpu_session.sh            # from the repository root, $OUT set by the caller
#
# The calls before it copy one part each: carry [".gpu/pK"], `mkdir -p /tmp/parts && cp .gpu/pK/* /tmp/parts/`.
# Every step has its own time limit, so a hang in one still leaves the others' results.
set -euo pipefail

OUT=${OUT:-/tmp/gpu-out}
PARTS=${PARTS:-/tmp/parts}
ART=${ART:-/tmp/bert14-gpu-artifact}
mkdir -p "$OUT" /tmp/ortgpu /tmp/site

if ! ls "$PARTS"/part.* >/dev/null 2>&1; then
    echo "gpu_session: expected onnxruntime-gpu parts in $PARTS (bash ../shared/device/pack-ort-gpu.sh, then copy .gpu/p0..p3 there)" >&2
    exit 2
fi
cat "$PARTS"/part.* | xz -dc | tar -C /tmp/ortgpu -xf -
# A wheel built here (`.venv/bin/pip wheel -q --no-deps -w .whl .`, carried with the last part)
# needs nothing on the machine; without one, pip builds the project there (needs setuptools).
if ls .whl/bert14-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/bert14-*.whl >"$OUT/install.log" 2>&1
else
    python3 -m pip install -q --no-deps --no-build-isolation --target /tmp/site . >"$OUT/install.log" 2>&1
fi
export PYTHONPATH=/tmp/site:/tmp/ortgpu
python3 -c "import torch, onnxruntime as o; print(torch.cuda.get_device_name() if torch.cuda.is_available() \
    else 'no CUDA device', o.__version__, o.get_available_providers())" | tee "$OUT/device.txt"

status=0
timeout 240 python3 -m bert14.commands.cli export --out "$ART" --exporter torchscript --no-int8 >"$OUT/export.log" 2>&1 || status=$?
tail -n 3 "$OUT/export.log"
if [ "$status" -eq 0 ]; then
    timeout 300 python3 benchmarks/gpu_check.py "$ART" --json "$OUT/check.json" 2>&1 | tee "$OUT/check.txt" || status=$?
    timeout 180 python3 benchmarks/gpu_profile.py "$ART" --public --json "$OUT/profile.json" 2>&1 \
        | tee "$OUT/profile.txt" || status=$?
fi
exit "$status"
