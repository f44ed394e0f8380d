"""Render the tool-call and reasoning conversations of tool_cases.json with transformers.

Same set-up as render_with_transformers.py (a tokenizer folder per template with the
tokenizer files of fixtures/hf/models/llama); run from the repository root:
    python crates/reins-data/tests/data/chat_templates/render_tool_cases.py
Output: tool_renderings.json  {template: {"case|agp=X": {"ok": text} | {"err": message}}}
"""
import datetime
import json
import os
import shutil
import sys
import tempfile

import transformers
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(os.environ.get("REINS_CHECKOUT", "."), "fixtures/hf/models/llama")
spec = json.load(open(os.path.join(ROOT, "tool_cases.json")))
tmp = tempfile.mkdtemp()

results = {}
for fname in sorted(os.listdir(os.path.join(ROOT, "templates"))):
    if not fname.endswith(".jinja"):
        continue
    name = fname[: -len(".jinja")]
    d = os.path.join(tmp, name)
    os.makedirs(d)
    shutil.copy(os.path.join(FIX, "tokenizer.json"), d)
    cfg = json.load(open(os.path.join(FIX, "tokenizer_config.json")))
    cfg.update({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<|pad|>", "unk_token": "<unk>"})
    json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    shutil.copy(os.path.join(ROOT, "templates", fname), os.path.join(d, "chat_template.jinja"))
    tok = AutoTokenizer.from_pretrained(d)
    res = {}
    for cname, case in spec["cases"].items():
        tools = spec["tools"] if case["tools"] else None
        for agp in case["add_generation_prompt"]:
            key = f"{cname}|agp={agp}"
            try:
                text = tok.apply_chat_template(case["messages"], tools=tools, tokenize=False, add_generation_prompt=agp)
                res[key] = {"ok": text}
            except Exception as e:  # noqa: BLE001
                res[key] = {"err": f"{type(e).__name__}: {e}"}
    results[name] = res

out = {"made_with": f"transformers {transformers.__version__} apply_chat_template(tokenize=False), tokenizer files of fixtures/hf/models/llama with each template",
       # Templates that print today's date used this one; the test renders with it fixed.
       "rendered_on": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
       "renderings": results}
json.dump(out, open(os.path.join(ROOT, "tool_renderings.json"), "w"), indent=1, ensure_ascii=False)
shutil.rmtree(tmp)
print("templates:", len(results), file=sys.stderr)
