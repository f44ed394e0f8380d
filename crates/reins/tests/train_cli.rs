//! End to end: `reins sft|reward|dpo|orpo|simpo|cpo|kto|lipo|cpl|t-reg` on the shipped examples. Each run must log finite losses,
//! move every trainable parameter, write a complete run folder, and resume from a checkpoint to
//! exactly the weights of the uninterrupted run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reins(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_reins")).args(args).current_dir(root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "reins {args:?} failed:\n{text}");
    text
}

fn tensors(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

fn check(method: &str, config: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = format!("output_dir=\"{}\"", out.display());
    let mut args = vec![method, "--config", config, "--set", &out_s, "--set", "max_steps=4", "--set", "save_steps=2"];
    args.extend_from_slice(extra);
    reins(&args);
    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoint-2/trainer_state.json",
        "checkpoint-4/model.safetensors",
        "checkpoint-4/config.json",
        "checkpoint-4/tokenizer.json",
        "checkpoint-4/optimizer.safetensors",
    ] {
        assert!(out.join(f).exists(), "{method}: run folder lacks {f}");
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = lines.iter().filter_map(|l| l.get("loss").and_then(|x| x.as_f64())).collect();
    assert!(losses.len() >= 4 && losses.iter().all(|l| l.is_finite()), "{method}: losses {losses:?}");
    // Every trainable parameter moved from its starting value.
    let end = tensors(&out.join("checkpoint-4/trainable.safetensors"));
    let start = tensors(&root().join("fixtures/hf/models/llama/model.safetensors"));
    for (name, t) in &end {
        if let Some(s) = start.get(name) {
            assert!(max_abs_diff(s, t) > 0.0, "{method}: {name} did not change");
        } else {
            // New heads / adapters start random or zero; they must be finite and non-zero.
            assert!(t.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{method}: {name} is zero");
        }
    }
    // Interrupt after step 2 (drop the last checkpoint), resume, and land on the same weights.
    std::fs::remove_dir_all(out.join("checkpoint-4")).unwrap();
    let text = reins(&args);
    assert!(text.contains("resuming from"), "{method}: did not resume:\n{text}");
    let resumed = tensors(&out.join("checkpoint-4/trainable.safetensors"));
    for (name, t) in &end {
        assert_eq!(max_abs_diff(t, &resumed[name]), 0.0, "{method}: resumed {name} differs from the uninterrupted run");
    }
}

#[test]
fn dpo_runs_moves_every_parameter_and_resumes_exactly() {
    check("dpo", "examples/dpo.toml", &[]);
}

#[test]
fn dpo_with_lora_uses_adapters_off_as_reference() {
    check(
        "dpo",
        "examples/dpo.toml",
        &["--set", "lora_r=4", "--set", "lora_target_modules=[\"q_proj\",\"v_proj\",\"down_proj\"]"],
    );
}

#[test]
fn dpo_in_bf16_moves_every_parameter_and_resumes_exactly() {
    check("dpo", "examples/dpo.toml", &["--set", "bf16=true"]);
}

/// `bf16 = true` runs the products in bf16: the first step's gradient norm moves by bf16's
/// rounding (so the products did run in bf16) and stays within a few percent of f32's.
#[test]
fn bf16_gradients_stay_close_to_f32() {
    let f32_run = train_lines("dpo", "examples/dpo.toml", &["max_steps=2"]);
    let bf16_run = train_lines("dpo", "examples/dpo.toml", &["max_steps=2", "bf16=true"]);
    let (a, b) = (metric(&f32_run[0], "grad_norm"), metric(&bf16_run[0], "grad_norm"));
    assert!((a - b).abs() > 1e-7 && (a - b).abs() < 0.05 * a, "grad_norm {a} (f32) vs {b} (bf16)");
}

#[test]
fn reward_model_runs_moves_every_parameter_and_resumes_exactly() {
    check("reward", "examples/reward.toml", &[]);
}

#[test]
fn sft_runs_moves_every_parameter_and_resumes_exactly() {
    check("sft", "examples/sft.toml", &[]);
}

#[test]
fn orpo_runs_moves_every_parameter_and_resumes_exactly() {
    check("orpo", "examples/orpo.toml", &[]);
}

#[test]
fn simpo_runs_moves_every_parameter_and_resumes_exactly() {
    check("simpo", "examples/simpo.toml", &[]);
}

#[test]
fn cpo_runs_moves_every_parameter_and_resumes_exactly() {
    check("cpo", "examples/cpo.toml", &[]);
}

#[test]
fn kto_runs_moves_every_parameter_and_resumes_exactly() {
    check("kto", "examples/kto.toml", &[]);
}

#[test]
fn kto_with_lora_on_paired_data_uses_adapters_off_as_reference() {
    check(
        "kto",
        "examples/kto.toml",
        &[
            "--set",
            "dataset=\"examples/data/pairs.jsonl\"",
            "--set",
            "lora_r=4",
            "--set",
            "lora_target_modules=[\"q_proj\",\"v_proj\",\"down_proj\"]",
        ],
    );
}

#[test]
fn lipo_runs_moves_every_parameter_and_resumes_exactly() {
    check("lipo", "examples/lipo.toml", &[]);
}

#[test]
fn lipo_trains_on_pairs_as_lists_of_two() {
    check("lipo", "examples/lipo.toml", &["--set", "dataset=\"examples/data/pairs.jsonl\""]);
}

#[test]
fn cpl_runs_moves_every_parameter_and_resumes_exactly() {
    check("cpl", "examples/cpl.toml", &[]);
}

/// The run logs CPL's metrics under TRL's DPO keys, and a conservative bias outside (0, 1]
/// is refused with the key's name.
#[test]
fn cpl_logs_dpo_metric_names_and_checks_its_bias() {
    let dir = tempfile::tempdir().unwrap();
    let out_s = format!("output_dir=\"{}\"", dir.path().join("run").display());
    reins(&["cpl", "--config", "examples/cpl.toml", "--set", &out_s, "--set", "max_steps=1"]);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    for key in
        ["loss", "cpl_loss", "bc_loss", "rewards/chosen", "rewards/margins", "rewards/accuracies", "logps/chosen"]
    {
        assert!(first.get(key).and_then(|v| v.as_f64()).is_some_and(f64::is_finite), "{key} missing: {first}");
    }
    let config = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(config.contains("contrastive_bias = 0.5"), "resolved config lacks the bias:\n{config}");
    let out = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["cpl", "--config", "examples/cpl.toml", "--set", &out_s, "--set", "contrastive_bias=1.5"])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("contrastive_bias"), "{err}");
}

#[test]
fn t_reg_runs_moves_every_parameter_and_resumes_exactly() {
    check("t-reg", "examples/t_reg.toml", &[]);
}

/// T-REG logs DPO's keys and its own; with uniform token rewards its regularizer is DPO's loss,
/// so the loss is `(1 + α)` times DPO's; a bad source is refused by name.
#[test]
fn t_reg_logs_its_terms_and_uniform_rewards_make_it_dpo() {
    let dir = tempfile::tempdir().unwrap();
    let first = |name: &str, sets: &[&str]| -> serde_json::Value {
        let out_s = format!("output_dir=\"{}\"", dir.path().join(name).display());
        let mut args = vec!["t-reg", "--config", "examples/t_reg.toml", "--set", &out_s, "--set", "max_steps=1"];
        for s in sets {
            args.extend(["--set", s]);
        }
        reins(&args);
        let text = std::fs::read_to_string(dir.path().join(name).join("metrics.jsonl")).unwrap();
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    };
    let c = first("contrastive", &[]);
    for key in ["loss", "t_reg/dpo_loss", "t_reg/reg_loss", "t_reg/implicit_reward_corr", "rewards/margins"] {
        assert!(c.get(key).and_then(|v| v.as_f64()).is_some_and(f64::is_finite), "{key} missing: {c}");
    }
    let u = first("uniform", &["token_reward=\"uniform\"", "alpha=0.5"]);
    let (loss, dpo, reg) = (metric(&u, "loss"), metric(&u, "t_reg/dpo_loss"), metric(&u, "t_reg/reg_loss"));
    assert!((reg - dpo).abs() < 1e-5 && (loss - 1.5 * dpo).abs() < 1e-5, "{u}");
    let out = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["t-reg", "--config", "examples/t_reg.toml", "--set", "token_reward=\"gold\""])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("gold"), "{err}");
}

#[test]
fn offline_trainers_name_their_config_typos() {
    for (method, config, typo, hint) in [
        ("orpo", "examples/orpo.toml", "betta=0.2", "beta"),
        ("simpo", "examples/simpo.toml", "simpo_gama=0.2", "simpo_gamma"),
        ("cpo", "examples/cpo.toml", "cpo_alfa=0.5", "cpo_alpha"),
        ("kto", "examples/kto.toml", "desirable_weigth=2.0", "desirable_weight"),
        ("lipo", "examples/lipo.toml", "max_list_sise=3", "max_list_size"),
        ("cpl", "examples/cpl.toml", "contrastive_bais=0.5", "contrastive_bias"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_reins"))
            .args([method, "--config", config, "--set", typo])
            .current_dir(root())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let key = typo.split('=').next().unwrap();
        assert!(!out.status.success() && err.contains(key) && err.contains(hint), "{method}: {err}");
    }
    // `reins simpo` refuses another CPO loss type; KTO refuses a batch too small for its KL term.
    for (method, config, set) in [
        ("simpo", "examples/simpo.toml", "loss_type=\"hinge\""),
        ("kto", "examples/kto.toml", "per_device_train_batch_size=1"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_reins"))
            .args([method, "--config", config, "--set", set])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{method} with {set} must fail");
    }
}

#[test]
fn config_typos_fail_before_training_and_name_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["dpo", "--config", "examples/dpo.toml", "--set", "betta=0.2"])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("betta") && err.contains("beta"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["dpo", "--config", "examples/dpo.toml", "--set", "dataset=\"examples/data/sft.jsonl\""])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "DPO on SFT data must fail: {err}");
}

/// `metrics.jsonl` training lines (those with a `loss`) of a run with `--set` overrides.
fn train_lines(method: &str, config: &str, sets: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = format!("output_dir=\"{}\"", out.display());
    let mut args = vec![method, "--config", config, "--set", &out_s];
    for s in sets {
        args.extend(["--set", s]);
    }
    reins(&args);
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l.get("loss").is_some())
        .collect()
}

fn metric(l: &serde_json::Value, key: &str) -> f64 {
    l[key].as_f64().unwrap_or_else(|| panic!("no `{key}` in {l}"))
}

#[test]
fn dpo_precomputed_reference_log_probs_match_the_live_reference() {
    let sets = ["max_steps=3", "eval_dataset=\"examples/data/pairs.jsonl\""];
    let live = train_lines("dpo", "examples/dpo.toml", &sets);
    let pre = train_lines("dpo", "examples/dpo.toml", &[&sets[..], &["precompute_ref_log_probs=true"]].concat());
    assert_eq!(live.len(), pre.len());
    for (a, b) in live.iter().zip(&pre) {
        for k in ["loss", "rewards/chosen", "rewards/rejected", "grad_norm"] {
            let (x, y) = (metric(a, k), metric(b, k));
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-2), "step {}: {k} {x} vs {y}", a["step"]);
        }
    }
}

#[test]
fn tr_dpo_moves_the_reference_and_resumes_exactly() {
    let sets = ["max_steps=3", "sync_ref_model=true", "ref_model_sync_steps=1", "ref_model_mixup_alpha=0.5"];
    let plain = train_lines("dpo", "examples/dpo.toml", &sets[..1]);
    let synced = train_lines("dpo", "examples/dpo.toml", &sets);
    // Step 1 runs against the starting reference in both; after the first sync they part.
    let loss = |ls: &[serde_json::Value], i: usize| metric(&ls[i], "loss");
    assert!((loss(&plain, 0) - loss(&synced, 0)).abs() < 1e-9, "step 1 must match");
    assert!((loss(&plain, 2) - loss(&synced, 2)).abs() > 1e-6, "the synced reference changed nothing");
    // The moved reference is checkpointed, so an interrupted run resumes onto the same weights.
    check("dpo", "examples/dpo.toml", &["--set", "sync_ref_model=true", "--set", "ref_model_sync_steps=1"]);
}

#[test]
fn tr_dpo_refuses_lora_and_precomputed_references() {
    for set in ["lora_r=4", "precompute_ref_log_probs=true"] {
        let out = Command::new(env!("CARGO_BIN_EXE_reins"))
            .args(["dpo", "--config", "examples/dpo.toml", "--set", "sync_ref_model=true", "--set", set])
            .current_dir(root())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("sync_ref_model"), "{set}: {err}");
    }
}

#[test]
fn reward_ensemble_flags_the_flipped_pair_and_writes_its_manifest() {
    // Twelve pairs that agree (a helpful reply beats "No."), one of them flipped.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.jsonl");
    let rows: Vec<String> = (0..12)
        .map(|i| {
            let (mut c, mut r) = (" Yes, gladly. Here it is.", " No.");
            if i == 5 {
                std::mem::swap(&mut c, &mut r);
            }
            let cat = if i % 2 == 0 { "even" } else { "odd" };
            serde_json::json!({"id": format!("p{i}"), "prompt": format!("\n\nHuman: Question number {i}?\n\nAssistant:"),
                "chosen": c, "rejected": r, "category": cat})
            .to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let out = dir.path().join("run");
    let set = |k: &str, v: &Path| format!("{k}=\"{}\"", v.display());
    let (d, o) = (set("dataset", &data), set("output_dir", &out));
    let e = set("eval_dataset", &data);
    let args = ["reward", "--config", "examples/reward.toml", "--set", &d, "--set", &e, "--set", &o];
    reins(&[&args[..], &["--set", "ensemble_size=3", "--set", "max_steps=12"]].concat());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ensemble.json")).unwrap()).unwrap();
    let members = manifest["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let weights: Vec<_> =
        members.iter().map(|m| tensors(&out.join(m.as_str().unwrap()).join("model.safetensors"))).collect();
    assert!(max_abs_diff(&weights[0]["score.weight"], &weights[1]["score.weight"]) > 0.0, "members are identical");
    let report: Vec<serde_json::Value> = std::fs::read_to_string(out.join("preference_strength.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(report.len(), 12);
    let flagged: Vec<&str> =
        report.iter().filter(|l| l["verdict"] == "likely_mislabeled").map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(flagged, ["p5"], "report: {report:?}");
    let last: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().last().unwrap())
            .unwrap();
    for k in ["ensemble_accuracy/mean", "ensemble_accuracy/min", "eval_accuracy/even", "eval_accuracy/odd"] {
        assert!(last[k].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)), "{k} in {last}");
    }
    // The flipped pair sits in `odd`: its accuracy is at most 5/6; `even` is learned fully.
    assert!(last["eval_accuracy/odd"].as_f64().unwrap() <= 5.0 / 6.0 + 1e-9, "{last}");
    assert_eq!(last["eval_accuracy/even"].as_f64().unwrap(), 1.0, "{last}");

    // The ensemble folder is a reward source: best-of-n scores with it.
    let best = dir.path().join("best.jsonl");
    let (b, r) = (best.to_str().unwrap(), out.to_str().unwrap());
    let model = "fixtures/hf/models/llama";
    let prompts = "examples/data/pairs.jsonl";
    let args = ["best-of-n", "--model", model, "--prompts", prompts, "--n", "2", "--max-new-tokens", "4"];
    reins(&[&args[..], &["--reward", r, "--out", b]].concat());
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&best).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l["score"].as_f64().is_some_and(f64::is_finite)), "{lines:?}");
}

#[test]
fn reward_listwise_on_ranked_lists_trains_and_resumes_exactly() {
    check(
        "reward",
        "examples/reward.toml",
        &["--set", "dataset=\"examples/data/ranked.jsonl\"", "--set", "eval_dataset=\"examples/data/ranked.jsonl\""],
    );
}

#[test]
fn plackett_luce_on_pairs_equals_bradley_terry() {
    let bt = train_lines("reward", "examples/reward.toml", &["max_steps=3"]);
    let pl = train_lines("reward", "examples/reward.toml", &["max_steps=3", "listwise=true"]);
    for (a, b) in bt.iter().zip(&pl) {
        for k in ["loss", "accuracy", "grad_norm"] {
            let (x, y) = (metric(a, k), metric(b, k));
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-2), "step {}: {k} BT {x} vs PL {y}", a["step"]);
        }
    }
}

#[test]
fn an_unknown_reins_device_stops_with_a_hint() {
    let out = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["dpo", "--config", "examples/dpo.toml", "--set", "output_dir=\"/nonexistent/never-written\""])
        .env("REINS_DEVICE", "gpu")
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "REINS_DEVICE=gpu ran:\n{err}");
    assert!(err.contains("REINS_DEVICE=gpu") && err.contains("hint:") && !err.contains("panicked"), "{err}");
}

#[test]
fn segment_reward_runs_moves_every_parameter_and_resumes_exactly() {
    check("segment-reward", "examples/segment_reward.toml", &[]);
}

/// The segment model reads the feedback app's spans export: every response's two sentences
/// become two labelled segments (one an error), the model learns them, and its folder says
/// what it judges.
#[test]
fn segment_reward_learns_the_exported_spans_and_records_its_granularity() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = format!("output_dir=\"{}\"", out.display());
    let log = reins(&[
        "segment-reward",
        "--config",
        "examples/segment_reward.toml",
        "--set",
        &out_s,
        "--set",
        "max_steps=12",
    ]);
    assert!(log.contains("8 responses, 16 Sentence segments, 8 of them errors"), "{log}");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint-12/segment_reward.json")).unwrap()).unwrap();
    assert_eq!(spec, serde_json::json!({"granularity": "sentence", "tags": ["unhelpful"]}));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = lines.iter().find(|l| l.get("loss").is_some()).unwrap();
    let last = lines.iter().rev().find(|l| l.get("loss").is_some()).unwrap();
    assert_eq!(first["error_rate"], 0.5, "{first}");
    assert!(last["loss"].as_f64().unwrap() < first["loss"].as_f64().unwrap(), "{first}\n{last}");
    // Rows without spans are refused with what the data should look like.
    let bad = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args([
            "segment-reward",
            "--config",
            "examples/segment_reward.toml",
            "--set",
            "dataset=\"examples/data/pairs.jsonl\"",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("spans") && !err.contains("panicked"), "{err}");
}

#[test]
fn principle_reward_runs_moves_every_parameter_and_resumes_exactly() {
    check("principle-reward", "examples/principle_reward.toml", &[]);
}

/// RLBFF from the CLI: written feedback becomes principle checks by the example rule file, a
/// principle reward model learns them and lists its principles, and best-of-n steers by a
/// chosen subset of them.
#[test]
fn principle_reward_learns_extracted_checks_and_steers_best_of_n() {
    let dir = tempfile::tempdir().unwrap();
    let checks = dir.path().join("principles.jsonl");
    let log = reins(&[
        "data",
        "principles",
        "examples/data/critiques.jsonl",
        checks.to_str().unwrap(),
        "--rules",
        "examples/principle_rules.toml",
    ]);
    assert!(log.contains("\"The answer is correct\": 3 yes, 2 no"), "{log}");
    assert!(log.contains("wrote 8 rows"), "{log}");
    // the shipped example file is this command's output
    assert_eq!(
        std::fs::read_to_string(&checks).unwrap(),
        std::fs::read_to_string(root().join("examples/data/principles.jsonl")).unwrap()
    );
    let out = dir.path().join("run");
    let (out_s, data_s) = (format!("output_dir=\"{}\"", out.display()), format!("dataset=\"{}\"", checks.display()));
    let log = reins(&[
        "principle-reward",
        "--config",
        "examples/principle_reward.toml",
        "--set",
        &out_s,
        "--set",
        &data_s,
        "--set",
        "max_steps=12",
    ]);
    assert!(log.contains("principle \"The answer is concise\": 6 yes, 1 no"), "{log}");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint-12/principle_reward.json")).unwrap())
            .unwrap();
    assert_eq!(
        spec["principles"],
        serde_json::json!([
            "The answer is concise",
            "The answer is correct",
            "The answer is helpful",
            "The answer is polite"
        ])
    );
    let losses: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .collect();
    assert!(losses.last().unwrap() < losses.first().unwrap(), "{losses:?}");
    let steer = dir.path().join("steer.toml");
    std::fs::write(
        &steer,
        format!(
            "path = {:?}\nprinciples = [\"The answer is concise\"]\n",
            out.join("checkpoint-12").display().to_string()
        ),
    )
    .unwrap();
    let best = dir.path().join("best.jsonl");
    let reward = format!("principles:{}", steer.display());
    let log = reins(&[
        "best-of-n",
        "--model",
        "fixtures/hf/models/llama",
        "--prompts",
        "examples/data/pairs.jsonl",
        "--n",
        "2",
        "--max-new-tokens",
        "8",
        "--reward",
        &reward,
        "--out",
        best.to_str().unwrap(),
    ]);
    assert!(log.contains("4 prompts × 2 samples"), "{log}");
    for l in std::fs::read_to_string(&best).unwrap().lines() {
        let score = serde_json::from_str::<serde_json::Value>(l).unwrap()["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "a probability: {score}");
    }
    // a principle the model never saw is refused unless allowed
    std::fs::write(
        &steer,
        format!("path = {:?}\nprinciples = [\"Is funny\"]\n", out.join("checkpoint-12").display().to_string()),
    )
    .unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args([
            "best-of-n",
            "--model",
            "fixtures/hf/models/llama",
            "--prompts",
            "examples/data/pairs.jsonl",
            "--reward",
            &reward,
            "--out",
            best.to_str().unwrap(),
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("allow_unseen") && !err.contains("panicked"), "{err}");
    // rows without principle checks are refused with what the data should look like
    let bad = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args([
            "principle-reward",
            "--config",
            "examples/principle_reward.toml",
            "--set",
            "dataset=\"examples/data/pairs.jsonl\"",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("reins data principles") && !err.contains("panicked"), "{err}");
}

#[test]
fn seq2seq_reward_runs_moves_every_parameter_and_resumes_exactly() {
    check("seq2seq-reward", "examples/seq2seq_reward.toml", &[]);
}
