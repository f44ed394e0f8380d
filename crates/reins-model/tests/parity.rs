//! Parity with transformers 5.24 on the fixtures in `fixtures/hf/models`: logits, token
//! log-probs, SFT loss, every parameter's gradient norm, greedy left-padded generation and
//! reward-model scores.

use std::path::PathBuf;

use candle_core::Device;
use reins_model::parity;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models").join(name)
}

fn run(name: &str, expect: &[&str]) {
    let dir = fixture(name);
    let report = parity::check(&dir, &dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    println!("{name}:\n{report}");
    for e in expect {
        assert!(report.checks.iter().any(|c| c.name.starts_with(e)), "{name}: check `{e}` did not run");
    }
    assert!(report.ok(), "{name} is off the reference:\n{report}");
}

const LM_CHECKS: &[&str] =
    &["logits", "token_logps", "sft_loss", "grad norms", "parameters without gradient", "greedy generation"];

#[test]
fn llama_matches_transformers() {
    run("llama", LM_CHECKS);
}

#[test]
fn qwen2_matches_transformers() {
    run("qwen2", LM_CHECKS);
}

#[test]
fn gpt2_matches_transformers() {
    run("gpt2", LM_CHECKS);
}

#[test]
fn llama_reward_model_scores_match_transformers() {
    run("llama-rm", &["scores"]);
}
