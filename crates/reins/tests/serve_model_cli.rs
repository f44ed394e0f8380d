//! `reins serve-model` over loopback: the OpenAI endpoints answer in OpenAI's shapes; a seeded
//! completion is exactly what the in-process sampler gives for the same prompt and seed (also
//! from token ids, and after a LoRA adapter is pushed with `/v1/load_lora_adapter`); a stream's
//! deltas add up to the whole reply; stop strings cut the reply; concurrent requests are all
//! served, and those with compatible settings are merged into one generation call while each
//! still gets exactly its own tokens (its seed's, as when sent alone); bad requests get a 400
//! that names the parameter. GRPO, RLOO and online DPO with
//! `vllm_server_base_url` (rollouts from the server, the LoRA adapter pushed each step) log the
//! same metrics and end with the same adapter, bit for bit, as in process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use reins_data::HfTokenizer;
use reins_model::generate::{generate, Hooks};
use reins_model::{LoadOptions, LoraConfig, Model, SamplingConfig};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server, killed when dropped.
struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    serve_with(&[])
}

fn serve_with(extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["serve-model", "--model", "fixtures/hf/models/llama", "--addr", "127.0.0.1:0"])
        .args(extra)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_else(|| panic!("{line}"));
    Served { addr: addr.to_string(), child }
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let (status, _, body) = http_with_head(addr, method, path, body);
    (status, body)
}

/// One HTTP/1.1 request; returns the status, the head (status line and headers) and the body.
fn http_with_head(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let payload = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    (status, head.to_string(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn post(addr: &str, path: &str, body: Value) -> Value {
    let (status, text) = http(addr, "POST", path, Some(&body));
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn completions_match_the_in_process_sampler_and_stream_the_same_text() {
    let s = serve();
    let (status, text) = http(&s.addr, "GET", "/v1/models", None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["data"][0]["id"], "llama");

    let dir = root().join("fixtures/hf/models/llama");
    let model = Model::load(&dir, &candle_core::Device::Cpu, &LoadOptions::default()).unwrap();
    let tok = HfTokenizer::from_dir(&dir).unwrap();
    let prompt = "The cat sat on";
    let r = post(&s.addr, "/v1/completions", json!({"prompt": prompt, "max_tokens": 8, "seed": 7, "temperature": 0.8}));
    assert_eq!(r["object"], "text_completion");
    let ids = tok.encode(prompt, true).unwrap();
    let cfg = SamplingConfig { max_new_tokens: 8, temperature: 0.8, seed: 7, ..Default::default() };
    let g = generate(&model, std::slice::from_ref(&ids), &cfg, Hooks::default()).unwrap();
    assert_eq!(r["choices"][0]["text"], tok.decode(&g.tokens[0], true).unwrap());
    assert_eq!(r["usage"]["prompt_tokens"], ids.len());
    assert_eq!(r["usage"]["completion_tokens"], g.tokens[0].len());

    // n samples of two prompts: four choices, in prompt order.
    let r = post(&s.addr, "/v1/completions", json!({"prompt": ["a", "b"], "max_tokens": 3, "n": 2, "seed": 1}));
    assert_eq!(r["choices"].as_array().unwrap().len(), 4);

    // Greedy chat, whole and streamed: the deltas add up to the reply, then [DONE].
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0});
    let whole = post(&s.addr, "/v1/chat/completions", chat.clone());
    assert_eq!(whole["object"], "chat.completion");
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (status, body) = http(&s.addr, "POST", "/v1/chat/completions", Some(&streamed));
    assert_eq!(status, 200, "{body}");
    let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
    let mut joined = String::new();
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        joined.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert_eq!(joined, content);

    // A stop string ends the reply before it.
    let full = post(&s.addr, "/v1/completions", json!({"prompt": prompt, "max_tokens": 12, "temperature": 0}));
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    let chars: Vec<char> = text.chars().collect();
    let at = (1..chars.len().saturating_sub(1))
        .find(|&i| !chars[i].is_whitespace() && !chars[i + 1].is_whitespace() && chars[i] != '\u{fffd}')
        .unwrap_or_else(|| panic!("no two-character stop string in {text:?}"));
    let stop: String = chars[at..at + 2].iter().collect();
    let cut =
        post(&s.addr, "/v1/completions", json!({"prompt": prompt, "max_tokens": 12, "temperature": 0, "stop": stop}));
    let t = cut["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with(t) && t.len() < text.len() && !t.contains(&stop), "{t:?} / {text:?} / stop {stop:?}");
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
}

/// Token-id prompts with `return_token_ids`, and a pushed LoRA adapter: the server samples
/// what the in-process sampler samples from base + adapter, token for token.
#[test]
fn token_id_prompts_and_a_pushed_adapter_match_the_in_process_sampler() {
    let s = serve();
    let dir = root().join("fixtures/hf/models/llama");
    let cpu = candle_core::Device::Cpu;
    let prompt: Vec<u32> = vec![5, 17, 99, 230, 7];
    let cfg = SamplingConfig { max_new_tokens: 8, temperature: 0.9, seed: 11, ..Default::default() };
    let body = json!({"prompt": [prompt.clone(), prompt.clone()], "max_tokens": 8, "temperature": 0.9, "seed": 11,
                      "return_token_ids": true});
    let ids = |r: &Value, i: usize| -> Vec<u32> {
        r["choices"][i]["token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let rows = vec![prompt.clone(), prompt.clone()];
    let base = Model::load(&dir, &cpu, &LoadOptions::default()).unwrap();
    let want = generate(&base, &rows, &cfg, Hooks::default()).unwrap().tokens;
    let r = post(&s.addr, "/v1/completions", body.clone());
    assert_eq!((ids(&r, 0), ids(&r, 1)), (want[0].clone(), want[1].clone()));

    // A LoRA adapter with random (non-zero) B, saved as PEFT, pushed to the server.
    let lora = LoraConfig { r: 4, lora_alpha: 8, ..Default::default() };
    let tuned =
        Model::load(&dir, &cpu, &LoadOptions { trainable: true, lora: Some(lora), seed: 3, ..Default::default() })
            .unwrap();
    for (name, var) in tuned.params() {
        if name.contains("lora_B") {
            let t = candle_core::Tensor::randn(0f32, 0.5, var.as_tensor().shape(), &cpu).unwrap();
            var.set(&t).unwrap();
        }
    }
    let adapter = tempfile::tempdir().unwrap();
    tuned.save_adapter(adapter.path(), "llama").unwrap();
    let (status, text) = http(
        &s.addr,
        "POST",
        "/v1/load_lora_adapter",
        Some(&json!({"lora_name": "step-1", "lora_path": adapter.path()})),
    );
    assert_eq!(status, 200, "{text}");
    let want_tuned = generate(&tuned, &rows, &cfg, Hooks::default()).unwrap().tokens;
    assert_ne!(want_tuned, want, "the adapter should change the samples for this test to mean anything");
    let r = post(&s.addr, "/v1/completions", body);
    assert_eq!((ids(&r, 0), ids(&r, 1)), (want_tuned[0].clone(), want_tuned[1].clone()));
    let (status, text) =
        http(&s.addr, "POST", "/v1/load_lora_adapter", Some(&json!({"lora_name": "x", "lora_path": "/nonexistent"})));
    assert!(status == 400 && text.contains("lora_path"), "{text}");
    let (status, text) = http(&s.addr, "POST", "/v1/completions", Some(&json!({"prompt": [1_000_000u32]})));
    assert!(status == 400 && text.contains("vocabulary"), "{text}");
}

#[test]
fn concurrent_requests_are_served_and_bad_ones_get_a_400() {
    let s = serve();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let addr = s.addr.clone();
            std::thread::spawn(move || {
                post(&addr, "/v1/completions", json!({"prompt": format!("p{i}"), "max_tokens": 4}))
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap()["choices"].as_array().unwrap().len(), 1);
    }
    for (body, param) in [
        (json!({"prompt": "x", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "x", "top_p": 1.5}), "top_p"),
        (json!({"prompt": "x", "n": 0}), "n"),
        (json!({"prompt": "x", "stream": true, "stop": "a"}), "stop"),
    ] {
        let (status, text) = http(&s.addr, "POST", "/v1/completions", Some(&body));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((status, v["error"]["param"].as_str()), (400, Some(param)), "{text}");
    }
    let (status, text) = http(&s.addr, "POST", "/v1/chat/completions", Some(&json!({"messages": []})));
    assert!(status == 400 && text.contains("messages"), "{text}");
    let (status, _) = http(&s.addr, "POST", "/v1/completions", Some(&json!("not an object")));
    assert_eq!(status, 400);
}

/// A header's value as a number (0 when missing).
fn header(head: &str, name: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Per choice, the text and finish reason of a reply, whole or streamed (deltas joined).
fn choices(body: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    let mut add = |c: &Value| {
        let i = c["index"].as_u64().unwrap() as usize;
        if out.len() <= i {
            out.resize(i + 1, Default::default());
        }
        out[i].0.push_str(c["text"].as_str().unwrap_or(""));
        if let Some(f) = c["finish_reason"].as_str() {
            out[i].1 = f.to_string();
        }
    };
    if body.starts_with('{') {
        serde_json::from_str::<Value>(body).unwrap()["choices"].as_array().unwrap().iter().for_each(&mut add);
    } else {
        let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
        for e in &events[..events.len() - 1] {
            serde_json::from_str::<Value>(e).unwrap()["choices"].as_array().unwrap().iter().for_each(&mut add);
        }
    }
    out
}

/// Requests sent together with a gathering window are sampled in one call (the batch headers
/// say so), and each still gets exactly its own tokens: the in-process sampler's for its seed
/// and rows, and what it gets when sent alone — with different seeds, prompts, `n` and
/// `max_tokens`, a stream, and stop strings. A greedy request (other settings) is sampled in a
/// batch of its own; a bad one gets its 400.
#[test]
fn concurrent_requests_are_batched_and_each_gets_its_own_tokens() {
    let s = serve_with(&["--batch-wait-ms", "400"]);
    let dir = root().join("fixtures/hf/models/llama");
    let model = Model::load(&dir, &candle_core::Device::Cpu, &LoadOptions::default()).unwrap();
    let tok = HfTokenizer::from_dir(&dir).unwrap();
    // The in-process sampler: per row, the text and finish reason.
    let local = |prompts: &[Vec<u32>], n: usize, max: usize, temperature: f64, seed: u64, stop: Option<&str>| {
        let rows: Vec<Vec<u32>> = prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), n)).collect();
        let cfg = SamplingConfig {
            max_new_tokens: max,
            do_sample: temperature > 0.0,
            temperature: if temperature > 0.0 { temperature } else { 1.0 },
            seed,
            ..Default::default()
        };
        let stop_fn = |_: usize, ids: &[u32]| stop.is_some_and(|st| tok.decode(ids, true).unwrap().contains(st));
        let g = generate(&model, &rows, &cfg, Hooks { stop: Some(&stop_fn), on_token: None }).unwrap();
        g.tokens
            .iter()
            .zip(&g.finish)
            .map(|(ids, f)| {
                let text = tok.decode(ids, true).unwrap();
                match stop.and_then(|st| text.find(st)) {
                    Some(at) => (text[..at].to_string(), "stop".to_string()),
                    None => (text, if *f == reins_model::generate::Finish::Length { "length" } else { "stop" }.into()),
                }
            })
            .collect::<Vec<_>>()
    };
    let enc = |p: &str| tok.encode(p, true).unwrap();
    let ids: Vec<u32> = vec![5, 17, 99, 230, 7];
    // A stop string that cuts a sampled reply (seed 21) short.
    let full = local(&[enc("Once upon")], 1, 12, 0.9, 21, None)[0].0.clone();
    let chars: Vec<char> = full.chars().collect();
    let at = (1..chars.len().saturating_sub(1))
        .find(|&i| !chars[i].is_whitespace() && !chars[i + 1].is_whitespace() && chars[i] != '\u{fffd}')
        .unwrap_or_else(|| panic!("no two-character stop string in {full:?}"));
    let stop: String = chars[at..at + 2].iter().collect();

    let requests: Vec<(Value, Vec<(String, String)>)> = vec![
        (
            json!({"prompt": "The cat sat on", "max_tokens": 8, "n": 2, "seed": 3, "temperature": 0.9}),
            local(&[enc("The cat sat on")], 2, 8, 0.9, 3, None),
        ),
        (
            json!({"prompt": ["a b c", "hello there"], "max_tokens": 5, "seed": 5, "temperature": 0.9}),
            local(&[enc("a b c"), enc("hello there")], 1, 5, 0.9, 5, None),
        ),
        (
            json!({"prompt": ids.clone(), "max_tokens": 6, "n": 3, "seed": 9, "temperature": 0.9}),
            local(std::slice::from_ref(&ids), 3, 6, 0.9, 9, None),
        ),
        (
            json!({"prompt": "Once", "max_tokens": 7, "n": 2, "seed": 13, "temperature": 0.9, "stream": true}),
            local(&[enc("Once")], 2, 7, 0.9, 13, None),
        ),
        (
            json!({"prompt": "Once upon", "max_tokens": 12, "seed": 21, "temperature": 0.9, "stop": stop}),
            local(&[enc("Once upon")], 1, 12, 0.9, 21, Some(&stop)),
        ),
        (json!({"prompt": "The cat", "max_tokens": 6, "temperature": 0}), local(&[enc("The cat")], 1, 6, 0.0, 0, None)),
    ];
    assert_eq!(requests[4].1[0].1, "stop", "the stop string should cut the reply: {:?}", requests[4].1);
    let threads: Vec<_> = requests
        .iter()
        .map(|(body, _)| {
            let (addr, body) = (s.addr.clone(), body.clone());
            std::thread::spawn(move || http_with_head(&addr, "POST", "/v1/completions", Some(&body)))
        })
        .collect();
    let (status, text) = http(&s.addr, "POST", "/v1/completions", Some(&json!({"prompt": "x", "n": 0})));
    assert!(status == 400 && text.contains("\"n\""), "{text}");
    let mut merged = 0;
    for (t, (body, want)) in threads.into_iter().zip(&requests) {
        let (status, head, text) = t.join().unwrap();
        assert_eq!(status, 200, "{text}");
        assert_eq!(&choices(&text), want, "{body}");
        let (rows, requests) = (header(&head, "x-reins-batch-rows"), header(&head, "x-reins-batch-requests"));
        assert!(rows >= want.len() && requests >= 1, "{head}");
        if body["temperature"] == 0 {
            assert_eq!((rows, requests), (1, 1), "greedy rows cannot join sampled ones: {head}");
        }
        merged = merged.max(requests);
    }
    assert!(merged > 1, "no batch held rows of more than one request");
    // Sent alone, each request gets the same reply, in a batch of its own.
    for (body, want) in &requests {
        let (status, head, text) = http_with_head(&s.addr, "POST", "/v1/completions", Some(body));
        assert_eq!(status, 200, "{text}");
        assert_eq!(&choices(&text), want, "{body}");
        assert_eq!(header(&head, "x-reins-batch-requests"), 1, "{head}");
    }
}

/// Runs `reins METHOD --config examples/grpo.toml` with a LoRA policy and a reward with spread
/// for 3 steps into `out`, with `extra` settings; returns (success, output).
fn train(method: &str, out: &std::path::Path, extra: &[String]) -> (bool, String) {
    let config = if method == "online-dpo" { "examples/online_dpo.toml" } else { "examples/grpo.toml" };
    let mut args: Vec<String> = vec![method.into(), "--config".into(), config.into()];
    let length = if method == "online-dpo" { "max_new_tokens=8" } else { "max_completion_length=8" };
    let sets = [
        "lora_r=4",
        "lora_alpha=8",
        "max_steps=3",
        length,
        "reward=contains:e",
        "learning_rate=0.01",
        "log_completions_steps=1",
    ];
    for x in
        sets.iter().map(|s| s.to_string()).chain([format!("output_dir={}", out.display())]).chain(extra.iter().cloned())
    {
        args.push("--set".into());
        args.push(x);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_reins")).args(&args).current_dir(root()).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn grpo_rloo_and_online_dpo_with_rollouts_from_the_server_train_as_in_process() {
    let s = serve();
    let dir = tempfile::tempdir().unwrap();
    let server = format!("vllm_server_base_url=http://{}/v1", s.addr);
    // GRPO's importance-sampling correction off: the weights the server samples with are the
    // learner's, and the runs must agree to the bit (the correction's own test is below).
    let off = "vllm_importance_sampling_correction=false".to_string();
    for method in ["grpo", "rloo", "online-dpo"] {
        let (local, remote) = (dir.path().join(format!("{method}-local")), dir.path().join(format!("{method}-server")));
        let (ok, text) = train(method, &local, &[]);
        assert!(ok, "{text}");
        let (ok, text) = train(method, &remote, &[server.clone(), off.clone()]);
        assert!(ok, "{text}");
        let metrics = |d: &std::path::Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics(&local), metrics(&remote), "{method}: the metrics differ");
        // The same sampled token ids, step by step.
        let samples = |d: &std::path::Path| std::fs::read_to_string(d.join("samples.jsonl")).unwrap();
        assert!(samples(&local).contains("completion_ids"), "no samples logged");
        assert_eq!(samples(&local), samples(&remote), "{method}: the sampled completions differ");
        // Something to learn from: rewards differ within a group (GRPO, RLOO) or a pair (online DPO).
        let spread: Vec<f64> = metrics(&local)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["reward_std"].as_f64().or(v["objective/scores_margin"].as_f64()).unwrap_or(0.0)
            })
            .collect();
        assert!(spread.iter().any(|&x| x > 0.0), "{method}: no reward spread, nothing to learn: {spread:?}");
        let adapter =
            |d: &std::path::Path| std::fs::read(d.join("checkpoint-3/adapter/adapter_model.safetensors")).unwrap();
        assert!(adapter(&local) == adapter(&remote), "{method}: the final adapters differ");
        assert!(remote.join("rollout-adapters/step-3/adapter_model.safetensors").exists());
    }
    // Without LoRA the full weights reach the server (`/update_weights_from_disk`): the same run.
    let full = "lora_r=0".to_string();
    let (local, remote) = (dir.path().join("full-local"), dir.path().join("full-server"));
    let (ok, text) = train("grpo", &local, std::slice::from_ref(&full));
    assert!(ok, "{text}");
    let (ok, text) = train("grpo", &remote, &[full.clone(), server.clone(), off.clone()]);
    assert!(ok, "{text}");
    let weights = |d: &std::path::Path| std::fs::read(d.join("checkpoint-3/trainable.safetensors")).unwrap();
    assert!(weights(&local) == weights(&remote), "full weights: the final weights differ");
    assert!(remote.join("rollout-weights/step-3/model.safetensors").exists());
    // A lag the other methods do not take is refused.
    let (ok, text) = train("rloo", &dir.path().join("rloo-lag"), &[server.clone(), "max_policy_lag=1".into()]);
    assert!(!ok && text.contains("max_policy_lag"), "{text}");
    // A dead server is an error that names it.
    drop(s);
    let (ok, text) = train("grpo", &dir.path().join("dead"), &[server]);
    assert!(!ok && text.contains("rollout server"), "{text}");
}

/// The trainer's log-probs against the server's, weighted as TRL's importance-sampling
/// correction weights them: at lag 0 the ratios are 1 up to rounding and the run is the
/// in-process one within 1e-5; at lag 1 the server samples the next batch from weights one
/// update old while the learner trains, the weights are pushed only when the bound needs it,
/// and the ratios move away from 1.
#[test]
fn grpo_with_a_policy_lag_corrects_for_the_stale_sampler() {
    let s = serve();
    let dir = tempfile::tempdir().unwrap();
    let server = format!("vllm_server_base_url=http://{}/v1", s.addr);
    let lines = |d: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let adapter = |d: &std::path::Path| {
        let t = candle_core::safetensors::load(
            d.join("checkpoint-3/adapter/adapter_model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let mut keys: Vec<_> = t.keys().cloned().collect();
        keys.sort();
        keys.iter().flat_map(|k| t[k].flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect::<Vec<f32>>()
    };
    let (local, lag0, lag1) = (dir.path().join("local"), dir.path().join("lag0"), dir.path().join("lag1"));
    let (ok, text) = train("grpo", &local, &[]);
    assert!(ok, "{text}");
    let (ok, text) = train("grpo", &lag0, std::slice::from_ref(&server));
    assert!(ok, "{text}");
    for l in lines(&lag0) {
        let r = l["sampling/importance_sampling_ratio/mean"].as_f64().expect("the correction logs its ratios");
        assert!((r - 1.0).abs() < 1e-4, "lag 0: ratio {r}");
    }
    let gap = adapter(&local).iter().zip(adapter(&lag0)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(gap <= 1e-5, "lag 0 with the correction: adapters differ by {gap}");

    let (ok, text) = train("grpo", &lag1, &[server.clone(), "max_policy_lag=1".into()]);
    assert!(ok, "{text}");
    let m = lines(&lag1);
    let lags: Vec<f64> = m.iter().map(|l| l["rollout/policy_lag"].as_f64().unwrap()).collect();
    assert_eq!(lags, vec![0.0, 1.0, 1.0], "the first batch is sampled on the spot, the next ones a step ahead");
    // Pushed before step 1 and during step 2 (the batch of step 3 may not lag 2): two pushes.
    assert!(lag1.join("rollout-adapters/step-2").exists() && !lag1.join("rollout-adapters/step-3").exists());
    let off_one: Vec<f64> =
        m[1..].iter().map(|l| (l["sampling/importance_sampling_ratio/mean"].as_f64().unwrap() - 1.0).abs()).collect();
    assert!(off_one.iter().any(|&d| d > 1e-4), "lag 1: the stale sampler's ratios stay at 1: {off_one:?}");
    // Bounds the wrong way round are refused before training, naming the keys.
    let bounds = ["vllm_importance_sampling_clip_min=2.0".into(), "vllm_importance_sampling_clip_max=1.5".into()];
    let (ok, text) = train("grpo", &dir.path().join("bounds"), &[&[server][..], &bounds[..]].concat());
    assert!(!ok && text.contains("vllm_importance_sampling_clip_min"), "{text}");
}
