"""What `../shared/bench`'s TRL benches read from the HH-RLHF sample, shared by the scripts here
that reproduce them: the rows, the (prompt, chosen, rejected) pairs they train DPO on, and the
BPE tokenizer (vocab 4096, trained on the chosen texts) they all use."""
import gzip, json
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def rows(path):
    return [json.loads(l) for l in gzip.open(path, "rt")]


def pairs(rows):
    """(prompt, chosen, rejected) of the rows whose two texts share their prompt."""
    def split(t):
        i = t.rfind("\n\nAssistant:") + len("\n\nAssistant:")
        return t[:i], t[i:]
    out = []
    for r in rows:
        p, c = split(r["chosen"]); p2, rj = split(r["rejected"])
        if p == p2 and c.strip() and rj.strip():
            out.append((p, c, rj))
    return out


def tokenizer(rows):
    tok = Tokenizer(models.BPE()); tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False); tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([r["chosen"] for r in rows], trainers.BpeTrainer(vocab_size=4096, special_tokens=["<|endoftext|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok
