#!/usr/bin/env bash
# Prepared GPU check for issue 15 (evidence of learning); about 10 minutes on one H100/H200.
#
#   bash bench/gpu_learning.sh          # writes JSON to $OUT (default /tmp/gpu-learning)
#
# bench.learning at the paper's width (DyNet dim 48, DyNet-L 4/6/6/8 and DyNet-S 2/3/3/4, the
# paper's prompts and 4 refinement blocks), bf16 autocast and channels_last (the trainer's CUDA
# defaults), batch 8 x 128x128: dynamic pre-training on patches of scikit-image's photographs,
# then the same fine-tuning steps from the pre-trained weights and from scratch, evaluated on
# held-back crops (sigma 15/25/50, the demo's synthetic rain and haze). On an H200 a DyNet-L
# step at this batch takes about 0.17 s and the L/S mix 0.13 s (bench/README.md, Training), so
# 1,200 steps per stage fit in about 10 minutes with the evaluation.
#
# Python packages the GPU image may lack (carry them as wheels, see the device notes):
# webdataset==1.0.2 braceexpand==0.1.7 pydantic==2.14.4 pydantic-core==2.50.5
# annotated-types==0.8.0 typing-inspection==0.4.5 scikit-image
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-/tmp/gpu-learning}
STEPS=${STEPS:-1200}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true

timeout 840 "$PY" -m bench.learning --device cuda --threads 4 --dim 48 \
    --variant-l 4 6 6 8 --variant-s 2 3 3 4 --crop 128 --batch 8 --lr 2e-4 \
    --image-size 192 --patches 512 --train-images 150 --test-images 30 \
    --pretrain-steps "$STEPS" --finetune-steps "$STEPS" \
    2> "$OUT/learning.log" | tee "$OUT/learning_gpu.json"
tail -n 3 "$OUT/learning.log"
