//! `reins grpo|rloo|ppo` end to end on the tiny Llama fixture with a rule reward: the run folder is
//! complete and every logged value is finite.

use std::path::PathBuf;
use std::process::Command;

fn run(method: &str) {
    run_with(method, "examples/grpo.toml", &["reward"]);
}

fn run_with(method: &str, config: &str, required: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_set = format!("output_dir={}", out.display());
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args([method, "--config", config, "--set", &out_set, "--set", "max_steps=2"])
        .current_dir(&root)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "reins {method} failed:\n{text}");
    for f in ["config.toml", "metrics.jsonl", "checkpoint-2/model.safetensors", "checkpoint-2/trainer_state.json"] {
        assert!(out.join(f).exists(), "{method}: run folder lacks {f}");
    }
    for line in std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for (k, x) in v.as_object().unwrap() {
            assert!(x.as_f64().is_some_and(f64::is_finite), "{method}: {k} = {x}");
        }
        for k in required {
            assert!(v.get(*k).is_some(), "{method}: no {k} logged: {v}");
        }
    }
    (dir, out)
}

#[test]
fn grpo_cli_runs_with_a_rule_reward() {
    run("grpo");
}

#[test]
fn rloo_cli_runs_with_a_rule_reward() {
    run("rloo");
}

#[test]
fn ppo_cli_runs_with_a_rule_reward_and_logs_samples() {
    let (_dir, out) =
        run_with("ppo", "examples/ppo.toml", &["reward", "objective/kl", "loss/value_avg", "objective/kl_coef"]);
    let samples = std::fs::read_to_string(out.join("samples.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = samples.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // examples/ppo.toml: log_completions_steps = 2, 4 prompts per step, one completion each.
    assert_eq!(lines.len(), 4, "{samples}");
    for l in &lines {
        assert_eq!(l["step"], 2);
        assert!(l["completion"].is_string() && l["reward"].is_number(), "{l}");
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint-2/trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["trainer"]["generations"], 2, "{state}");
}

#[test]
fn ppo_cli_rejects_a_config_typo_by_name() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["ppo", "--config", "examples/ppo.toml", "--set", "kl_coeff=0.1"])
        .current_dir(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("kl_coeff") && err.contains("kl_coef"), "{err}");
}

#[test]
fn remax_cli_runs() {
    run_with("remax", "examples/remax.toml", &["reward", "reward_greedy", "loss"]);
}

#[test]
fn online_dpo_cli_runs() {
    let keys = ["objective/kl", "objective/scores", "rewards/chosen", "rewards/margins", "logps/rejected", "beta"];
    run_with("online-dpo", "examples/online_dpo.toml", &keys);
}

#[test]
fn iterative_dpo_cli_runs_one_round_per_step() {
    let (_dir, out) = run_with("iterative-dpo", "examples/iterative_dpo.toml", &["reward", "pairs"]);
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert!(first["pairs"].as_f64().unwrap() > 0.0, "round 1 found no best/worst pair: {first}");
    // save_steps = 1: a checkpoint per round, each recording the rounds done.
    for round in 1..=2 {
        let p = out.join(format!("checkpoint-{round}/trainer_state.json"));
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(state["trainer"]["rounds"], round, "{state}");
    }
}
