#!/bin/bash
# One sitting side by side on the reference shape: PyTorch's and candle's GEMM, the training
# step, reins (with and without packing and split decoding), HF generate, TRL DPO and GRPO,
# each Python anchor twice around reins so that drift in the machine shows.
#
#   bench/side_by_side.sh target/release/reins [previous reins binary]
#
# PY: a Python with torch, transformers, trl, datasets, tokenizers (default: python3);
# SHARED: the folder with bench/ and data/hh-rlhf-harmless (default: ../shared).
set -u
B=$1; OLD=${2:-}
PY=${PY:-python3}; SHARED=${SHARED:-../shared}; S=$SHARED/bench; HH=$SHARED/data/hh-rlhf-harmless/train.jsonl.gz
HERE=$(dirname "$0")
echo "== machine"; date; lscpu | grep "Model name"
echo "== torch gemm"; $PY $HERE/torch_gemm_shapes.py
echo "== reins gemm"; $B bench --only gemm
echo "== torch train step"; $PY $S/torch_train_step.py
echo "== reins"; $B bench --reps 5
echo "== reins, no packing, no split decoding"
REINS_PACKING=0 REINS_SPLIT_DECODING=0 $B bench --reps 5 --only dpo
REINS_PACKING=0 $B bench --only dpo-hh
REINS_SPLIT_DECODING=0 $B bench --reps 5 --only grpo
REINS_SPLIT_DECODING=0 $B bench --reps 5 --only generate
if [ -n "$OLD" ]; then echo "== previous binary"; $OLD bench --reps 5; fi
echo "== torch anchors"; $PY $S/torch_anchors.py
echo "== trl dpo"; $PY $S/trl_dpo_bench.py $HH 14 2>&1 | grep -E "TRL_DPO|params"
echo "== trl grpo"; $PY $S/trl_grpo_bench.py $HH 8 2>&1 | grep -E "TRL_|params"
echo "== reins again"; $B bench --reps 5
echo "== trl dpo again"; $PY $S/trl_dpo_bench.py $HH 14 2>&1 | grep -E "TRL_DPO"
echo "== trl grpo again"; $PY $S/trl_grpo_bench.py $HH 8 2>&1 | grep -E "TRL_"
echo "== reins grpo again"; $B bench --reps 10 --only grpo
echo "== torch train step again"; $PY $S/torch_train_step.py
date
