//! Loading variants, gradient coverage, LoRA, checkpoints and sampling on the tiny fixtures.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use reins_model::generate::{generate, generate_mixture, generate_streams, Hooks};
use reins_model::logprobs::sft_loss;
use reins_model::{nn, Batch, LoadOptions, LoraConfig, Model, SamplingConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models").join(name)
}

fn batch() -> Batch {
    // Right-padded, pad id 3.
    Batch::new(
        vec![vec![5, 17, 99, 230, 7, 8, 9, 10], vec![44, 45, 46, 47, 3, 3, 3, 3]],
        vec![vec![1; 8], vec![1, 1, 1, 1, 0, 0, 0, 0]],
    )
    .unwrap()
}

fn load(dir: &Path, opts: LoadOptions) -> Model {
    Model::load(dir, &Device::Cpu, &opts).unwrap()
}

fn trainable() -> LoadOptions {
    LoadOptions { trainable: true, ..Default::default() }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn loss_of(m: &Model, b: &Batch) -> Tensor {
    let logits = m.logits(b).unwrap();
    let ids = nn::ids_tensor(&b.ids, m.device()).unwrap();
    let mask = nn::mask_tensor(&b.mask, m.device()).unwrap();
    sft_loss(&logits, &ids, &mask).unwrap()
}

/// Every trainable parameter must receive a non-zero gradient.
fn assert_full_gradient(m: &Model, loss: &Tensor) {
    let grads = loss.backward().unwrap();
    assert!(!m.params().is_empty());
    for (name, var) in m.params() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} got no gradient"));
        let n = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: gradient norm² {n}");
    }
}

/// A copy of a fixture folder with `config.json` edited.
fn variant(name: &str, edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(fixture(name)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let p = dir.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&p, serde_json::to_string(&cfg).unwrap()).unwrap();
    dir
}

#[test]
fn every_parameter_gets_a_gradient_in_each_architecture() {
    for name in ["llama", "qwen2", "gpt2"] {
        let m = load(&fixture(name), trainable());
        assert_full_gradient(&m, &loss_of(&m, &batch()));
    }
    let mistral = variant("llama", |c| {
        c["model_type"] = "mistral".into();
        c["sliding_window"] = 4.into();
    });
    let m = load(mistral.path(), trainable());
    assert_full_gradient(&m, &loss_of(&m, &batch()));
    let rm = load(&fixture("llama-rm"), trainable());
    let loss = rm.scores(&batch()).unwrap().sum_all().unwrap();
    assert_full_gradient(&rm, &loss);
    let critic = load(&fixture("llama"), LoadOptions { trainable: true, value_head: true, ..Default::default() });
    let h = critic.hidden(&batch()).unwrap();
    let loss = (critic.values_from_hidden(&h).unwrap().sum_all().unwrap()
        + critic.lm_logits(&h).unwrap().mean_all().unwrap())
    .unwrap();
    assert_full_gradient(&critic, &loss);
}

#[test]
fn mistral_with_a_wide_window_equals_llama_and_a_narrow_one_differs() {
    let base = load(&fixture("llama"), LoadOptions::default()).logits(&batch()).unwrap();
    let wide = variant("llama", |c| {
        c["model_type"] = "mistral".into();
        c["sliding_window"] = 4096.into();
    });
    let narrow = variant("llama", |c| {
        c["model_type"] = "mistral".into();
        c["sliding_window"] = 2.into();
    });
    assert!(max_diff(&base, &load(wide.path(), LoadOptions::default()).logits(&batch()).unwrap()) < 1e-6);
    assert!(max_diff(&base, &load(narrow.path(), LoadOptions::default()).logits(&batch()).unwrap()) > 1e-3);
}

#[test]
fn old_rope_spelling_loads_the_same_model() {
    let old = variant("llama", |c| {
        let o = c.as_object_mut().unwrap();
        o.remove("rope_parameters");
        o.insert("rope_theta".into(), 10000.0.into());
    });
    let a = load(&fixture("llama"), LoadOptions::default()).logits(&batch()).unwrap();
    let b = load(old.path(), LoadOptions::default()).logits(&batch()).unwrap();
    assert_eq!(max_diff(&a, &b), 0.0);
}

#[test]
fn sharded_checkpoints_load() {
    let m = load(&fixture("llama"), LoadOptions::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("llama/config.json"), dir.path().join("config.json")).unwrap();
    let tensors = m.named_tensors().unwrap();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let mut map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        reins_model::weights::save_safetensors(&dir.path().join(&file), part).unwrap();
        for (k, _) in part.iter() {
            map.insert(k.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let b = load(dir.path(), LoadOptions::default());
    assert_eq!(max_diff(&m.logits(&batch()).unwrap(), &b.logits(&batch()).unwrap()), 0.0);
}

#[test]
fn bad_checkpoints_get_clear_errors() {
    let missing =
        Model::load(Path::new("/nonexistent/model"), &Device::Cpu, &LoadOptions::default()).err().unwrap().to_string();
    assert!(missing.contains("/nonexistent/model"), "{missing}");
    let wrong = variant("llama", |c| c["hidden_size"] = 32.into());
    let e = Model::load(wrong.path(), &Device::Cpu, &LoadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("model.embed_tokens.weight") && e.contains("shape"), "{e}");
    let arch = variant("llama", |c| c["model_type"] = "mamba".into());
    let e = Model::load(arch.path(), &Device::Cpu, &LoadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("config.json") && e.contains("mamba"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
    let e = Model::load(dir.path(), &Device::Cpu, &LoadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
}

#[test]
fn save_pretrained_round_trips_with_the_same_keys() {
    for name in ["llama", "qwen2", "gpt2", "llama-rm"] {
        let m = load(&fixture(name), LoadOptions::default());
        let dir = tempfile::tempdir().unwrap();
        m.save_pretrained(dir.path()).unwrap();
        let orig = candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu).unwrap();
        let saved = candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
        let mut a: Vec<_> = orig.keys().collect();
        let mut b: Vec<_> = saved.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: saved keys differ from the transformers checkpoint");
        for (k, t) in &orig {
            assert_eq!(max_diff(t, &saved[k]), 0.0, "{name}: {k}");
        }
    }
}

#[test]
fn lora_starts_at_the_base_trains_only_adapters_and_merges() {
    let dir = fixture("llama");
    let base = load(&dir, LoadOptions::default());
    let cfg = LoraConfig {
        r: 4,
        lora_alpha: 8,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        ..Default::default()
    };
    let mut m = load(&dir, LoadOptions { trainable: true, lora: Some(cfg.clone()), seed: 1, ..Default::default() });
    assert_eq!(m.params().len(), 2 * 3 * 2, "A and B for 3 modules x 2 layers");
    assert!(m.params().iter().all(|(n, _)| n.starts_with("base_model.model.model.layers.")
        && (n.ends_with("lora_A.weight") || n.ends_with("lora_B.weight"))));
    let b = batch();
    assert_eq!(max_diff(&base.logits(&b).unwrap(), &m.logits(&b).unwrap()), 0.0, "B = 0 at init");
    assert_full_gradient_after_nudge(&m, &b);
    // Perturb B so adapters matter, then check reference / merge / PEFT round trip.
    for (n, v) in m.params() {
        if n.ends_with("lora_B.weight") {
            v.set(&(v.as_tensor().ones_like().unwrap() * 0.01).unwrap()).unwrap();
        }
    }
    let adapted = m.logits(&b).unwrap();
    assert!(max_diff(&base.logits(&b).unwrap(), &adapted) > 1e-4);
    assert_eq!(
        max_diff(&base.logits(&b).unwrap(), &m.without_adapters().logits(&b).unwrap()),
        0.0,
        "reference = adapters off"
    );
    let peft = tempfile::tempdir().unwrap();
    m.save_adapter(peft.path(), "fixtures/hf/models/llama").unwrap();
    let cfg_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(peft.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg_json["peft_type"], "LORA");
    let reloaded = load(&dir, LoadOptions { lora_dir: Some(peft.path().to_path_buf()), ..Default::default() });
    assert!(max_diff(&adapted, &reloaded.logits(&b).unwrap()) < 1e-6);
    m.merge_adapters().unwrap();
    assert!(max_diff(&adapted, &m.logits(&b).unwrap()) < 1e-5, "merged weights reproduce the adapted model");
}

fn assert_full_gradient_after_nudge(m: &Model, b: &Batch) {
    // At init B = 0 so A's gradient is exactly zero (as in PEFT); B's must be non-zero.
    let grads = loss_of(m, b).backward().unwrap();
    for (name, var) in m.params() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} got no gradient"));
        if name.ends_with("lora_B.weight") {
            assert!(g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{name}");
        }
    }
}

#[test]
fn sampling_is_seeded_and_padding_does_not_change_greedy_output() {
    let m = load(&fixture("llama"), LoadOptions::default());
    let prompts = vec![vec![5u32, 17, 99, 230, 7], vec![44, 45]];
    let cfg = SamplingConfig {
        max_new_tokens: 12,
        seed: 42,
        top_k: 50,
        top_p: 0.9,
        stop_on_eos: false,
        ..Default::default()
    };
    let a = generate(&m, &prompts, &cfg, Hooks::default()).unwrap();
    let b = generate(&m, &prompts, &cfg, Hooks::default()).unwrap();
    assert_eq!(a.tokens, b.tokens);
    let c = generate(&m, &prompts, &SamplingConfig { seed: 43, ..cfg.clone() }, Hooks::default()).unwrap();
    assert_ne!(a.tokens, c.tokens);
    assert!(a.logprobs.iter().flatten().all(|&x| x <= 0.0 && x.is_finite()));
    // Greedy: the short prompt alone and inside a left-padded batch give the same tokens.
    let greedy = SamplingConfig { stop_on_eos: false, ..SamplingConfig::greedy(10) };
    let batch = generate(&m, &prompts, &greedy, Hooks::default()).unwrap();
    let alone = generate(&m, &prompts[1..], &greedy, Hooks::default()).unwrap();
    assert_eq!(batch.tokens[1], alone.tokens[0]);
}

#[test]
fn a_sampled_row_depends_on_its_stream_not_on_its_batch() {
    let m = load(&fixture("llama"), LoadOptions::default());
    let prompts = vec![vec![5u32, 17, 99, 230, 7], vec![44, 45], vec![3, 4, 5], vec![61, 62, 63, 64]];
    let cfg = SamplingConfig { max_new_tokens: 12, seed: 42, top_k: 50, stop_on_eos: false, ..Default::default() };
    let all = generate(&m, &prompts, &cfg, Hooks::default()).unwrap();
    // Rows 2 and 3 sampled alone (a second data-parallel rank) on streams (42, 2) and (42, 3).
    let half = generate_streams(&m, &prompts[2..], &cfg, &[(42, 2), (42, 3)], Hooks::default()).unwrap();
    assert_eq!(&all.tokens[2..], &half.tokens[..]);
    for (a, b) in all.logprobs[2..].iter().flatten().zip(half.logprobs.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // Rows of one batch with different seeds: each is what its own request would sample.
    let mixed = generate_streams(&m, &prompts[..2], &cfg, &[(7, 0), (42, 1)], Hooks::default()).unwrap();
    let seven = generate(&m, &prompts[..1], &SamplingConfig { seed: 7, ..cfg.clone() }, Hooks::default()).unwrap();
    assert_eq!(mixed.tokens[0], seven.tokens[0]);
    assert_eq!(mixed.tokens[1], all.tokens[1]);
    // Same prompt, different rows: different streams.
    let same = generate(&m, &[prompts[0].clone(), prompts[0].clone()], &cfg, Hooks::default()).unwrap();
    assert_ne!(same.tokens[0], same.tokens[1]);
    assert!(generate_streams(&m, &prompts, &cfg, &[(1, 0)], Hooks::default()).is_err());
}

#[test]
fn rows_that_share_a_prompt_sample_as_if_alone() {
    // Rows 0, 2 and 3 share one prefill; each must still be what it samples alone.
    let m = load(&fixture("llama"), LoadOptions::default());
    let (p, q) = (vec![5u32, 17, 99, 230, 7], vec![44u32, 45]);
    let prompts = vec![p.clone(), q.clone(), p.clone(), p];
    let cfg = SamplingConfig { max_new_tokens: 12, seed: 42, top_k: 50, stop_on_eos: false, ..Default::default() };
    let all = generate(&m, &prompts, &cfg, Hooks::default()).unwrap();
    for (r, prompt) in prompts.iter().enumerate() {
        let alone =
            generate_streams(&m, std::slice::from_ref(prompt), &cfg, &[(42, r as u64)], Hooks::default()).unwrap();
        assert_eq!(all.tokens[r], alone.tokens[0], "row {r}");
        for (a, b) in all.logprobs[r].iter().zip(&alone.logprobs[0]) {
            assert!((a - b).abs() < 1e-5, "row {r}: {a} vs {b}");
        }
    }
    assert_ne!(all.tokens[0], all.tokens[2], "rows of one prompt draw from their own streams");
}

#[test]
fn sampled_logprobs_equal_a_scoring_pass() {
    let m = load(&fixture("qwen2"), LoadOptions::default());
    let prompt = vec![10u32, 11, 12, 13];
    let cfg = SamplingConfig { max_new_tokens: 8, seed: 5, stop_on_eos: false, ..Default::default() };
    let g = generate(&m, std::slice::from_ref(&prompt), &cfg, Hooks::default()).unwrap();
    let full: Vec<u32> = prompt.iter().chain(&g.tokens[0]).copied().collect();
    let n = full.len();
    let scored = reins_model::generate::score_logps(&m, &Batch::new(vec![full], vec![vec![1; n]]).unwrap()).unwrap();
    let scored: Vec<f32> = scored.squeeze(0).unwrap().to_vec1().unwrap();
    for (j, lp) in g.logprobs[0].iter().enumerate() {
        assert!(
            (lp - scored[prompt.len() - 1 + j]).abs() < 1e-4,
            "token {j}: {lp} vs {}",
            scored[prompt.len() - 1 + j]
        );
    }
}

/// Nash-MD's opponent: weights (1, 0) and (0, 1) give each model alone (bit for bit), and at
/// (0.7, 0.3) every sampled token's log-prob is `log_softmax((0.7·z_a + 0.3·z_b)/T)` computed
/// from full scoring passes of both models.
#[test]
fn a_geometric_mixture_samples_from_the_weighted_logits() {
    let a = load(&fixture("llama"), LoadOptions::default());
    let mut w = reins_model::init::random_weights(&a.config, 3, &Device::Cpu).unwrap();
    let b = Model::from_weights(a.config.clone(), &mut w, &Device::Cpu, &LoadOptions::default()).unwrap();
    let prompts = vec![vec![5u32, 17, 99, 230, 7], vec![44, 45]];
    let cfg = SamplingConfig { max_new_tokens: 6, seed: 9, temperature: 0.7, stop_on_eos: false, ..Default::default() };
    let run = |models: &[(&Model, f64)]| generate_mixture(models, &prompts, &cfg, Hooks::default()).unwrap();
    let only_a = generate(&a, &prompts, &cfg, Hooks::default()).unwrap();
    let only_b = generate(&b, &prompts, &cfg, Hooks::default()).unwrap();
    assert_eq!(run(&[(&a, 1.0), (&b, 0.0)]).tokens, only_a.tokens);
    assert_eq!(run(&[(&a, 0.0), (&b, 1.0)]).tokens, only_b.tokens);
    assert_ne!(only_a.tokens, only_b.tokens, "the two models should differ for this test to mean anything");

    let g = run(&[(&a, 0.7), (&b, 0.3)]);
    for (row, prompt) in prompts.iter().enumerate() {
        let full: Vec<u32> = prompt.iter().chain(&g.tokens[row]).copied().collect();
        let batch = Batch::new(vec![full.clone()], vec![vec![1; full.len()]]).unwrap();
        let za: Vec<Vec<f32>> = a.logits(&batch).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        let zb: Vec<Vec<f32>> = b.logits(&batch).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        for (j, &tok) in g.tokens[row].iter().enumerate() {
            let at = prompt.len() - 1 + j;
            let mix: Vec<f64> =
                za[at].iter().zip(&zb[at]).map(|(x, y)| (0.7 * *x as f64 + 0.3 * *y as f64) / 0.7).collect();
            let max = mix.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + mix.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            let want = mix[tok as usize] - lse;
            let got = g.logprobs[row][j] as f64;
            assert!((got - want).abs() < 1e-4, "row {row} token {j}: {got} vs {want}");
        }
    }
    assert!(generate_mixture(&[], &prompts, &cfg, Hooks::default()).is_err());
}

#[test]
fn lora_dropout_applies_in_training_only() {
    let dir = fixture("llama");
    let cfg = LoraConfig { r: 4, lora_alpha: 8, lora_dropout: 0.5, ..Default::default() };
    let m = load(&dir, LoadOptions { trainable: true, lora: Some(cfg), seed: 3, ..Default::default() });
    for (n, v) in m.params() {
        if n.ends_with("lora_B.weight") {
            v.set(&(v.as_tensor().ones_like().unwrap() * 0.05).unwrap()).unwrap();
        }
    }
    let b = batch();
    let (t1, t2) = (m.logits(&b).unwrap(), m.logits(&b).unwrap());
    assert!(max_diff(&t1, &t2) > 1e-5, "training forwards draw fresh dropout masks");
    let d = m.detached();
    assert_eq!(max_diff(&d.logits(&b).unwrap(), &d.logits(&b).unwrap()), 0.0, "inference copies have no dropout");
}

/// bf16 autocast: products in bf16, everything else f32. The scores move by bf16's rounding
/// (so the products did run in bf16) but stay close to f32's, every weight gets an f32
/// gradient pointing the way f32's does, on the padded and the packed path, Llama and GPT-2.
#[test]
fn bf16_autocast_stays_close_to_f32_with_f32_gradients() {
    use candle_core::DType;
    use reins_model::logprobs::{masked_token_logps, masked_token_logps_per_row};
    let b = batch();
    let scored = vec![vec![0, 0, 0, 1, 1, 1, 1, 1], vec![0, 0, 1, 1, 0, 0, 0, 0]];
    for name in ["llama", "qwen2", "gpt2"] {
        let f32m = load(&fixture(name), trainable());
        let mut bf16m = f32m.clone(); // the same weights (shared Vars)
        bf16m.set_autocast(Some(DType::BF16));
        for packed in [true, false] {
            let run = |m: &Model| {
                if packed {
                    masked_token_logps(m, &b, &scored, 1.0).unwrap()
                } else {
                    masked_token_logps_per_row(m, &b, &scored, 1.0).unwrap().0
                }
            };
            let (lf, lb) = (run(&f32m), run(&bf16m));
            assert_eq!(lb.dtype(), DType::F32, "{name}: log-probs come back in f32");
            let d = max_diff(&lf, &lb);
            let scale = lf.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            // bf16 keeps 8 significant bits (relative step 2⁻⁸); allow four steps at the
            // largest log-prob (the fixtures measured 0.2 % for Llama, 0.7 % for Qwen2).
            let tol = 4.0 * scale.max(1.0) / 256.0;
            assert!(
                d > 1e-6 && d < tol,
                "{name} packed={packed}: bf16 log-probs differ from f32 by {d} (tolerance {tol})"
            );
            let (gf, gb) = (lf.sum_all().unwrap().backward().unwrap(), lb.sum_all().unwrap().backward().unwrap());
            for (pname, v) in f32m.params() {
                let (x, y) = (
                    gf.get(v.as_tensor()).unwrap(),
                    gb.get(v.as_tensor()).unwrap_or_else(|| panic!("{pname}: no gradient under bf16")),
                );
                assert_eq!(y.dtype(), DType::F32, "{pname}: the gradient reaches the f32 weight in f32");
                let dot = (x * y).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
                let (nx, ny) = (norm(x), norm(y));
                if nx > 1e-6 {
                    let cos = dot / (nx * ny);
                    assert!(cos > 0.99, "{name} {pname}: bf16 gradient at cosine {cos} to f32's");
                }
            }
        }
    }
}

#[test]
fn bf16_autocast_samples_and_trains() {
    use candle_core::DType;
    let mut m = load(&fixture("llama"), trainable());
    m.set_autocast(Some(DType::BF16));
    let cfg = SamplingConfig { max_new_tokens: 6, seed: 1, stop_on_eos: false, ..Default::default() };
    let g = generate(&m, &[vec![5, 17, 99]], &cfg, Hooks::default()).unwrap();
    assert_eq!(g.tokens[0].len(), 6);
    assert!(g.logprobs[0].iter().all(|lp| lp.is_finite() && *lp <= 0.0));
    // Plain SGD on the f32 weights from bf16 gradients lowers the loss.
    let b = batch();
    let before = loss_of(&m, &b).to_scalar::<f32>().unwrap();
    for _ in 0..5 {
        let grads = loss_of(&m, &b).backward().unwrap();
        for (_, v) in m.params() {
            let g = grads.get(v.as_tensor()).unwrap();
            v.set(&(v.as_tensor() - (g * 0.5).unwrap()).unwrap()).unwrap();
        }
    }
    let after = loss_of(&m, &b).to_scalar::<f32>().unwrap();
    assert!(after < before - 0.1, "loss {before} -> {after}");
}
