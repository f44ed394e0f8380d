//! `reins grpo|rloo` end to end on the tiny Llama fixture with a rule reward: the run folder is
//! complete and every logged value is finite.

use std::path::PathBuf;
use std::process::Command;

fn run(method: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_set = format!("output_dir={}", out.display());
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args([method, "--config", "examples/grpo.toml", "--set", &out_set, "--set", "max_steps=2"])
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
        assert!(v.get("reward").is_some(), "{method}: no reward logged: {v}");
    }
}

#[test]
fn grpo_cli_runs_with_a_rule_reward() {
    run("grpo");
}

#[test]
fn rloo_cli_runs_with_a_rule_reward() {
    run("rloo");
}
