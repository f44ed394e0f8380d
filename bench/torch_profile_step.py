"""PyTorch's per-op table for the training step of `reins bench` (reference shape: Llama 4 x 256,
4 heads, MLP 1024, vocab 4096, batch 8 x 128, f32, 2 threads): forward + cross-entropy +
backward + clip_grad_norm_(1.0) + AdamW, profiled over 5 steps after 2 warm-ups.
Prints `torch.profiler`'s table sorted by self CPU time, to read beside `perf report` of
`reins bench --only train` (see docs/speed.md)."""
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, LlamaConfig

torch.set_num_threads(2)
cfg = LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False, pad_token_id=0)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(4, 4096, (8, 128))

def step():
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad(set_to_none=True)

for _ in range(2):
    step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(5):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
