//! The feature reward model end to end: `reins reward-features` fits the shipped example's
//! features on the shipped pairs and writes `feature_rm.json`; `features:<dir>` is a best-of-n
//! and GRPO reward; a second fit needs `--force`; a broken feature file says what to fix.

#[path = "common/cli.rs"]
mod cli;
use cli::{ok, reins, s};

#[test]
fn fit_then_score_with_a_feature_reward_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("features");
    let fit = ["reward-features", "--config", "examples/reward_features.toml", "--data", "examples/data/pairs.jsonl"];
    let text = ok(&[&fit[..], &["--out", s(&out)]].concat());
    assert!(text.contains("fit on 4 pairs") && text.contains("polite") && text.contains("prompt_overlap"), "{text}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("feature_rm.json")).unwrap()).unwrap();
    assert_eq!(model["weights"].as_array().unwrap().len(), 5);
    assert!(model["weights"].as_array().unwrap().iter().all(|w| w.as_f64().unwrap().is_finite()));
    let (again, text) = reins(&[&fit[..], &["--out", s(&out)]].concat());
    assert!(!again && text.contains("--force"), "{text}");

    let spec = format!("features:{}", out.display());
    let best = dir.path().join("best.jsonl");
    ok(&[
        "best-of-n",
        "--model",
        "fixtures/hf/models/llama",
        "--prompts",
        "examples/data/pairs.jsonl",
        "--n",
        "4",
        "--max-new-tokens",
        "6",
        "--reward",
        &spec,
        "--out",
        s(&best),
    ]);
    let rows = std::fs::read_to_string(&best).unwrap();
    assert_eq!(rows.lines().count(), 4, "{rows}");
    let out_set = format!("output_dir={}", dir.path().join("grpo").display());
    let reward_set = format!("reward={spec}");
    ok(&[
        "grpo",
        "--config",
        "examples/grpo.toml",
        "--set",
        &reward_set,
        "--set",
        &out_set,
        "--set",
        "max_steps=1",
        "--set",
        "max_completion_length=6",
    ]);
}

/// A neural residual on top of the features: `reins reward --set residual_of_features=DIR`
/// trains, its checkpoint carries the feature model, and `residual:<checkpoint>` scores each
/// sample as the feature model's score plus the checkpoint's own (best-of-n on the same seed).
#[test]
fn a_residual_reward_model_adds_its_score_to_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("features");
    let fit = ["reward-features", "--config", "examples/reward_features.toml", "--data", "examples/data/pairs.jsonl"];
    ok(&[&fit[..], &["--out", s(&features)]].concat());
    let run = dir.path().join("residual");
    let (out_set, feat_set) =
        (format!("output_dir=\"{}\"", run.display()), format!("residual_of_features=\"{}\"", features.display()));
    let text = ok(&[
        "reward",
        "--config",
        "examples/reward.toml",
        "--set",
        &out_set,
        "--set",
        &feat_set,
        "--set",
        "max_steps=4",
    ]);
    assert!(text.contains("residual of the feature model"), "{text}");
    let ckpt = run.join("checkpoint-4");
    assert_eq!(
        std::fs::read_to_string(ckpt.join("feature_rm.json")).unwrap(),
        std::fs::read_to_string(features.join("feature_rm.json")).unwrap()
    );
    let scores = |reward: &str| -> Vec<f64> {
        let all = dir.path().join("all.jsonl");
        let best = dir.path().join("best.jsonl");
        ok(&[
            "best-of-n",
            "--model",
            "fixtures/hf/models/llama",
            "--prompts",
            "examples/data/pairs.jsonl",
            "--n",
            "3",
            "--max-new-tokens",
            "6",
            "--seed",
            "5",
            "--reward",
            reward,
            "--out",
            s(&best),
            "--all",
            s(&all),
        ]);
        std::fs::read_to_string(&all)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["score"].as_f64().unwrap())
            .collect()
    };
    let both = scores(&format!("residual:{}", ckpt.display()));
    let f = scores(&format!("features:{}", features.display()));
    let m = scores(&ckpt.display().to_string());
    assert_eq!((both.len(), f.len(), m.len()), (12, 12, 12));
    for i in 0..12 {
        assert!((both[i] - f[i] - m[i]).abs() < 1e-4, "sample {i}: {} vs {} + {}", both[i], f[i], m[i]);
    }
    // ranked lists train Plackett–Luce, which takes no offset
    let (bad, text) = reins(&[
        "reward",
        "--config",
        "examples/reward.toml",
        "--set",
        &feat_set,
        "--set",
        "dataset=\"examples/data/ranked.jsonl\"",
    ]);
    assert!(!bad && text.contains("residual_of_features") && !text.contains("panicked"), "{text}");
}

#[test]
fn a_broken_feature_file_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[feature]]\nkind = \"regex_count\"\nname = \"polite\"\npattern = \"(please\"\n").unwrap();
    let out = dir.path().join("out");
    let (ok, text) =
        reins(&["reward-features", "--config", s(&bad), "--data", "examples/data/pairs.jsonl", "--out", s(&out)]);
    assert!(!ok && text.contains("feature `polite`") && text.contains("not valid"), "{text}");
    let (ok, text) = reins(&[
        "best-of-n",
        "--model",
        "fixtures/hf/models/llama",
        "--prompts",
        "examples/data/pairs.jsonl",
        "--n",
        "2",
        "--reward",
        &format!("features:{}", out.display()),
        "--out",
        s(&dir.path().join("b.jsonl")),
    ]);
    assert!(!ok && text.contains("reins reward-features"), "{text}");
}
