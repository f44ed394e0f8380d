#!/bin/bash
B=$1; P=/tmp/REF/bin/python; M=/work/main/bench
cd /work/benchrun
date
echo "== torch qwen train"; $P $M/torch_qwen2_shape.py train 2
echo "== reins qwen train"; $B bench --shape qwen2-0.5b --only train --reps 2
echo "== torch qwen dpo"; $P $M/torch_qwen2_shape.py dpo 2
echo "== reins qwen dpo"; $B bench --shape qwen2-0.5b --only dpo --reps 2
echo "== reins qwen dpo per-row"; REINS_SHARED_PROMPTS=0 $B bench --shape qwen2-0.5b --only dpo --reps 2
echo "== gemm qwen"; $P $M/torch_gemm_shapes.py 2048 896 4864 32000; $B bench --shape qwen2-0.5b --only gemm
date
