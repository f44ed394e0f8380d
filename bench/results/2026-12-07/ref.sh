#!/bin/bash
# Side by side on the reference shape. $1 = reins binary.
B=$1; S=/work/shared/bench; P=/tmp/REF/bin/python; M=/work/main/bench
cd /work/benchrun
echo "== machine"; date; lscpu | grep "Model name"
echo "== torch gemm"; $P $M/torch_gemm_shapes.py
echo "== reins gemm"; $B bench --only gemm
echo "== torch train step"; $P $S/torch_train_step.py
echo "== reins (shared prompts)"; $B bench --reps 5
echo "== reins (per-row)"; REINS_SHARED_PROMPTS=0 $B bench --reps 5 --only dpo; REINS_SHARED_PROMPTS=0 $B bench --reps 5 --only grpo
echo "== torch anchors"; $P $S/torch_anchors.py
echo "== trl dpo"; $P $S/trl_dpo_bench.py /work/shared/data/hh-rlhf-harmless/train.jsonl.gz 14 2>&1 | grep -E "TRL_DPO|params"
echo "== trl grpo"; $P $S/trl_grpo_bench.py /work/shared/data/hh-rlhf-harmless/train.jsonl.gz 8 2>&1 | grep -E "TRL_|params"
echo "== reins again"; $B bench --reps 5
echo "== torch train step again"; $P $S/torch_train_step.py
date
