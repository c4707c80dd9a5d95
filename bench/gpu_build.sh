#!/usr/bin/env bash
# Prepared GPU check for issue 14 (IQA on a GPU worker); about 4 minutes on one H100/H200.
#
#   bash bench/gpu_build.sh          # writes JSON to $OUT (default /tmp/gpu-build)
#
# 1. bench.quality --device cuda: the three default metrics batched on the GPU (pyiqa, the GPU
#    path of curation.quality) against the CPU fast path, with their score differences.
# 2. bench.build --device cuda: the whole build of the real-image mix with quality.device
#    cuda, so that IQA runs on the GPU and the CPU seconds per candidate are what is left
#    (docs/scale.md: "c drops by the IQA share"). Its inputs come from the Debian packages
#    bench.curation_accuracy downloads; where apt cannot reach them, --offline (scikit-image's
#    photographs and the generated 12 MP JPEGs only) is taken instead.
#
# Python packages the GPU image may lack: as for bench/gpu_learning.sh, plus pyiqa==0.1.16,
# numba==0.68.1, duckdb, pyarrow and opencv-python-headless (carry them as wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-/tmp/gpu-build}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true

timeout 240 "$PY" -m bench.quality --device cuda 2> "$OUT/quality.log" \
    | tee "$OUT/quality_gpu.json" || echo "bench.quality failed: see $OUT/quality.log"
timeout 300 "$PY" -m bench.build --device cuda 2> "$OUT/build.log" > "$OUT/build_gpu.json" \
    || timeout 240 "$PY" -m bench.build --device cuda --offline 2>> "$OUT/build.log" \
        > "$OUT/build_gpu.json" || echo "bench.build failed: see $OUT/build.log"
tail -n 3 "$OUT/build.log"
