#!/usr/bin/env bash
# Prepared GPU check for DyNet training (issue 6); about 5 minutes on one H100/H200.
#
#   bash bench/gpu_train.sh            # writes JSON to $OUT (default /tmp/gpu-train)
#
# 1. bench/train.py on CUDA: bf16 autocast, channels_last, batch 8 x 128x128, one full step
#    (forward, L1, backward, clip, AdamW) of DyNet-L, DyNet-S and the dynamic mix (p = 0.5),
#    40 s each: images/s and peak GPU memory; plus the patch loader, 1 worker and 12 workers.
# 2. The real loop (python -m dynet.train) for 120 pre-training steps on generated 512px patch
#    shards with 12 loader workers: its metrics.csv shows patches/s and the data-wait share.
#
# Python packages the GPU image lacks (carry them as wheels, see the device notes):
# webdataset==1.0.2 braceexpand==0.1.7 pydantic==2.14.4 pydantic-core==2.50.5
# annotated-types==0.8.0 typing-inspection==0.4.5
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-/tmp/gpu-train}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true

timeout 230 "$PY" bench/train.py --device cuda --precision bf16 --batch 8 --size 128 \
    --seconds 40 --threads 4 --patches 48 --loader-workers 12 | tee "$OUT/bench_train_gpu.json"

"$PY" - "$WORK/shards" <<'EOF'
import sys
from flows.demo.data import encode, photo_like
from storage.shards import Sample, ShardWriter
with ShardWriter(sys.argv[1], max_count=32) as writer:
    for i in range(128):
        writer.write(Sample(f"p{i:05d}", encode(photo_like(512, 512, seed=i), "PNG"), "png", {}))
print(",".join(s.uri for s in writer.written))
EOF
SHARDS=$(ls "$WORK"/shards/*.tar | paste -sd, -)

timeout 150 "$PY" -m dynet.train --stage pretrain steps=120 batch_size=8 crop=128 \
    "data.shards=[$SHARDS]" data.workers=12 data.prefetch=4 \
    checkpoint.dir="$WORK/ckpt" checkpoint.every_steps=100 \
    log.dir="$OUT/loop" log.every_steps=10 log.progress=false | tee "$OUT/loop_summary.json"
tail -n 5 "$OUT/loop/metrics.csv"
rm -rf "$WORK"
