"""Token lengths of the DPO pairs `shared/bench/trl_dpo_bench.py` trains on, as TRL 1.16 sees
them: its BPE tokenizer (vocab 4096, trained on HH's chosen texts), EOS after each answer,
pairs whose prompt fills max_length (128) dropped, prompt + answer cut to 128 ("keep_start").
Prints `[prompt, chosen, rejected]` per pair; `reins bench` draws its HH-length DPO batches
from this list (crates/reins/src/commands/bench.rs, HH_DPO_LENGTHS).

    python bench/hh_dpo_lengths.py ../shared/data/hh-rlhf-harmless/train.jsonl.gz
"""
import gzip, json, sys
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

rows = [json.loads(l) for l in gzip.open(sys.argv[1], "rt")]
def split(t):
    i = t.rfind("\n\nAssistant:") + len("\n\nAssistant:")
    return t[:i], t[i:]
data = []
for r in rows:
    p, c = split(r["chosen"]); p2, rj = split(r["rejected"])
    if p == p2 and c.strip() and rj.strip():
        data.append((p, c, rj))
tok = Tokenizer(models.BPE()); tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False); tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([r["chosen"] for r in rows], trainers.BpeTrainer(vocab_size=4096, special_tokens=["<|endoftext|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
n = lambda s: len(tok.encode(s).ids)
MAX = 128
out = []
for p, c, r in data[: 8 * 14]:  # the pairs the TRL bench is given
    lp = n(p)
    if lp >= MAX:
        continue
    out.append([lp, min(n(c) + 1, MAX - lp), min(n(r) + 1, MAX - lp)])
print(json.dumps(out))
