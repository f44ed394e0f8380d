"""Token lengths of the DPO pairs `shared/bench/trl_dpo_bench.py` trains on, as TRL 1.16 sees
them: its BPE tokenizer (vocab 4096, trained on HH's chosen texts), EOS after each answer,
pairs whose prompt fills max_length (128) dropped, prompt + answer cut to 128 ("keep_start").
Prints `[prompt, chosen, rejected]` per pair; `reins bench` draws its HH-length DPO batches
from this list (crates/reins/src/commands/bench.rs, HH_DPO_LENGTHS).

    python bench/hh_dpo_lengths.py ../shared/data/hh-rlhf-harmless/train.jsonl.gz
"""
import json, sys
import hh_reference

rows = hh_reference.rows(sys.argv[1])
tok = hh_reference.tokenizer(rows)
n = lambda s: len(tok.encode(s).ids)
MAX = 128
out = []
for p, c, r in hh_reference.pairs(rows)[: 8 * 14]:  # the pairs the TRL bench is given
    lp = n(p)
    if lp >= MAX:
        continue
    out.append([lp, min(n(c) + 1, MAX - lp), min(n(r) + 1, MAX - lp)])
print(json.dumps(out))
