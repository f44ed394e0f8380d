"""PyTorch's per-op table for a TRL 1.16 DPO or GRPO step on the reference shape, to read beside
`perf report` of `reins bench --only dpo` / `--only grpo` (see docs/speed.md). The setups are
`../shared/bench/trl_dpo_bench.py`'s and `trl_grpo_bench.py`'s: Llama 4 x 256, vocab 4096 (a BPE
trained on the HH-RLHF sample), f32, 2 threads; DPO: 8 real HH pairs per step, max_length 128,
a frozen reference; GRPO: 2 prompts x 4 generations x 64 new tokens with HF generate, a rule
reward, k3 KL to a frozen reference (beta 0.04). Steps 3-6 are profiled; the table is sorted by
self CPU time. For GRPO the share of each step spent inside `generate` is printed first.

    python torch_profile_trl.py dpo ../../shared/data/hh-rlhf-harmless/train.jsonl.gz
    python torch_profile_trl.py grpo ../../shared/data/hh-rlhf-harmless/train.jsonl.gz
"""
import copy, sys, tempfile, time
import torch
from torch.profiler import ProfilerActivity, profile
from datasets import Dataset
import hh_reference
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, TrainerCallback
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

torch.set_num_threads(2)
what, hh = sys.argv[1], sys.argv[2]
rows = hh_reference.rows(hh)
tok = hh_reference.tokenizer(rows)
fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
cfg = LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False)
step_time, gen_time = [], []

class Profile(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        if state.global_step == 2:
            self.prof = profile(activities=[ProfilerActivity.CPU]); self.prof.__enter__()
        self.t = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        if 3 <= state.global_step <= 6:
            step_time.append(time.perf_counter() - self.t)
        if state.global_step == 6:
            self.prof.__exit__(None, None, None)

cb = Profile()
if what == "dpo":
    data = [{"prompt": p, "chosen": c, "rejected": rj} for p, c, rj in hh_reference.pairs(rows)]
    model = AutoModelForCausalLM.from_config(cfg)
    args = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, max_steps=6, learning_rate=1e-4,
                     max_length=128, logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                     dataloader_num_workers=0)
    tr = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list(data[:48]),
                    processing_class=fast, callbacks=[cb])
else:
    prompts = [r["chosen"][: r["chosen"].find("\n\nAssistant:") + 12][-200:] for r in rows]
    base = tempfile.mkdtemp()
    AutoModelForCausalLM.from_config(cfg).save_pretrained(base); fast.save_pretrained(base)
    def reward_len(completions, **kw):
        return [-abs(len(c) - 80) / 80 for c in completions]
    args = GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, num_generations=4, max_completion_length=64,
                      max_steps=6, learning_rate=1e-5, logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True,
                      seed=0, beta=0.04, temperature=1.0)
    tr = GRPOTrainer(model=base, reward_funcs=reward_len, args=args,
                     train_dataset=Dataset.from_list([{"prompt": p} for p in prompts[:64]]), processing_class=fast, callbacks=[cb])
    inner = tr.model.generate
    def timed_generate(*a, **k):
        t = time.perf_counter(); out = inner(*a, **k); gen_time.append(time.perf_counter() - t); return out
    tr.model.generate = timed_generate
tr.train()
line = f"{what} steps 3-6: {sum(step_time) / len(step_time):.3f} s/step"
if gen_time:
    g = gen_time[2:6]
    line += f", generate {sum(g) / len(g):.3f} s/step ({100 * sum(g) / sum(step_time):.0f} %)"
print(line)
print(cb.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
