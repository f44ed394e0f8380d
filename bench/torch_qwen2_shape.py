"""PyTorch anchor for `reins bench --shape qwen2-0.5b`: the Qwen2-0.5B layout at reduced vocab
(`qwen2-0.5b-shape/config.json`: 24 layers, d_model 896, 14 heads / 2 KV heads, MLP 4864,
q/k/v biases, tied embeddings, vocab 32,000; random weights), f32, 2 threads.

    python torch_qwen2_shape.py train [reps]   # batch 4 x 512: forward + CE + backward + clip + AdamW
    python torch_qwen2_shape.py dpo [reps]     # 4 pairs of 512 (prompt 256 + answer 256), as TRL computes them

The DPO step is TRL's `DPOTrainer` computation written out: chosen and rejected rows
concatenated into one policy forward over all 512 positions, per-token log-probs of the answer
tokens summed, the same forward of a frozen copy under `no_grad`, the sigmoid loss (beta 0.1),
backward, clip_grad_norm_(1.0), AdamW. Prints the median of `reps` timed steps after one warm-up
and the process's peak resident memory (run each measurement in its own process)."""
import os, resource, statistics, sys, time, copy, torch
from transformers import AutoModelForCausalLM, Qwen2Config

torch.set_num_threads(2)
what = sys.argv[1] if len(sys.argv) > 1 else "train"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 2
cfg = Qwen2Config.from_json_file(os.path.join(os.path.dirname(__file__), "qwen2-0.5b-shape", "config.json"))
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").train()
print("params", sum(p.numel() for p in model.parameters()))
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
V = cfg.vocab_size

if what == "train":
    ids = torch.randint(4, V, (4, 512))
    def step():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)
else:
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    prompt = torch.randint(4, V, (4, 256))
    ids = torch.cat([torch.cat([prompt, torch.randint(4, V, (4, 256))], 1),
                     torch.cat([prompt, torch.randint(4, V, (4, 256))], 1)], 0)  # [chosen; rejected]
    mask = torch.zeros_like(ids, dtype=torch.bool); mask[:, 256:] = True
    def seq_logps(m):
        logits = m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1]
        lp = torch.gather(logits.log_softmax(-1), 2, ids[:, 1:, None]).squeeze(2)
        return (lp * mask[:, 1:]).sum(-1)
    def step():
        logps = seq_logps(model)
        with torch.no_grad():
            ref_logps = seq_logps(ref)
        r = logps - ref_logps
        loss = -torch.nn.functional.logsigmoid(0.1 * (r[:4] - r[4:])).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)

ts = []
for i in range(reps + 1):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"TORCH_QWEN2_SHAPE {what} median={statistics.median(ts[1:]):.2f}s min={min(ts[1:]):.2f}s peak_rss={peak_mib:.0f}MiB")
