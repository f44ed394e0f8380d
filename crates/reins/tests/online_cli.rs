//! `reins grpo|rloo|ppo` end to end on the tiny Llama fixture with a rule reward: the run folder is
//! complete and every logged value is finite.

use std::path::PathBuf;
use std::process::Command;

fn run(method: &str) {
    run_with(method, "examples/grpo.toml", &["reward"]);
}

fn run_with(method: &str, config: &str, required: &[&str]) -> (tempfile::TempDir, PathBuf) {
    run_with_sets(method, config, required, &[])
}

/// As [`run_with`], with more `--set` overrides.
fn run_with_sets(method: &str, config: &str, required: &[&str], sets: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_set = format!("output_dir={}", out.display());
    let mut args = vec![method, "--config", config, "--set", &out_set, "--set", "max_steps=2"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_reins")).args(&args).current_dir(&root).output().unwrap();
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

#[test]
fn inpo_cli_runs_rounds_with_the_inpo_loss() {
    let (_dir, out) = run_with("inpo", "examples/inpo.toml", &["reward", "pairs", "inpo/h", "inpo/target"]);
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert_eq!(first["inpo/target"].as_f64(), Some(5.0), "eta = 0.1 gives the target 1/(2 eta) = 5: {first}");
    // INPO fixes its references, and needs 0 <= tau < eta: config errors, not silent changes.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (set, named) in [("reference_policy=round_start", "reference_policy"), ("tau=0.2", "tau")] {
        let o = Command::new(env!("CARGO_BIN_EXE_reins"))
            .current_dir(&root)
            .args(["inpo", "--config", "examples/inpo.toml", "--set", set])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(named), "{set}: {err}");
    }
}

#[test]
fn osp_cli_self_judges_ranked_pairs_and_trains_on_their_strengths() {
    let (_dir, out) = run_with("osp", "examples/osp.toml", &["pairs", "osp/strength", "loss", "objective/kl"]);
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    // 4 prompts, 4 samples each, ranked pairs: at most 2 pairs a prompt.
    let pairs = first["pairs"].as_f64().unwrap();
    assert!(pairs > 0.0 && pairs <= 8.0, "{first}");
    let p = first["osp/strength"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p) && p != 1.0, "the self-judge's strengths are probabilities: {first}");
    // The judge as a reward, and the errors a template or a label typo gets.
    run_with_sets("osp", "examples/osp.toml", &["pairs"], &["judge=reward", "labels=hard"]);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (set, named) in [("judge_template=\"no slots\"", "{prompt}"), ("labels=\"softer\"", "softer")] {
        let o = Command::new(env!("CARGO_BIN_EXE_reins"))
            .current_dir(&root)
            .args(["osp", "--config", "examples/osp.toml", "--set", set])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(named), "{set}: {err}");
    }
}

/// `judge = "self"`: the policy judges its own samples (the self-judge on the live weights) in
/// every command that learns from a judge's preferences.
#[test]
fn the_policy_judges_itself_in_every_judged_command() {
    for (method, config, key) in [
        ("online-dpo", "examples/online_dpo.toml", "rewards/margins"),
        ("iterative-dpo", "examples/iterative_dpo.toml", "pairs"),
        ("inpo", "examples/inpo.toml", "pairs"),
        ("nash-md", "examples/nash_md.toml", "rewards/probabilities"),
    ] {
        let (_dir, out) = run_with_sets(method, config, &[key], &["judge=\"self\""]);
        let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
        assert!(config.contains("judge = \"self\""), "{method}: the resolved config lacks the judge:\n{config}");
    }
}

#[test]
fn nash_md_cli_runs_with_trl_metric_names() {
    let keys = ["loss/score", "loss/kl", "rewards/probabilities", "rewards/chosen", "rewards/rejected", "mixture_coef"];
    let (_dir, out) = run_with("nash-md", "examples/nash_md.toml", &keys);
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert_eq!(first["mixture_coef"].as_f64(), Some(0.125), "{first}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .current_dir(&root)
        .args(["nash-md", "--config", "examples/nash_md.toml", "--set", "mixture_coef=1.5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("mixture_coef"), "{err}");
}

/// MA-RLHF's macro actions from the command line (`termination_condition`, `ngram`,
/// `value_function`), and a clear error for a typo in the condition's name.
#[test]
fn ppo_cli_runs_with_macro_actions() {
    let keys = ["loss/policy_avg", "loss/value_avg", "objective/kl"];
    let sets = ["termination_condition=fixed", "ngram=3", "value_function=position", "response_length=6"];
    run_with_sets("ppo", "examples/ppo.toml", &keys, &sets);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .current_dir(&root)
        .args(["ppo", "--config", "examples/ppo.toml", "--set", "termination_condition=fixd"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("termination_condition"), "{err}");
}

/// `max_kl` needs a KL to compare: every online command measures the KL to the reference when
/// it is set, even without a KL penalty (GRPO and ReMax at their default `beta = 0`, RLOO at
/// `beta = 0`, iterative DPO).
#[test]
fn every_online_command_logs_a_kl_when_max_kl_is_set() {
    let runs: [(&str, &str, &[&str], &str); 6] = [
        ("grpo", "examples/grpo.toml", &["beta=0.0", "max_completion_length=6"], "kl"),
        ("rloo", "examples/grpo.toml", &["beta=0.0", "max_completion_length=6"], "kl"),
        ("remax", "examples/remax.toml", &["beta=0.0", "max_completion_length=6"], "kl"),
        ("iterative-dpo", "examples/iterative_dpo.toml", &["num_generations=4", "max_new_tokens=6"], "objective/kl"),
        ("ppo", "examples/ppo.toml", &["response_length=6"], "objective/kl"),
        ("online-dpo", "examples/online_dpo.toml", &["max_new_tokens=6"], "objective/kl"),
    ];
    for (method, config, sets, key) in runs {
        run_with_sets(method, config, &[key], &[sets, &["max_kl=1e9"][..]].concat());
    }
}

/// GRPO at `beta = 0` (its default) stops on `max_kl` once the policy has moved.
#[test]
fn grpo_without_a_kl_penalty_stops_on_max_kl() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out_set = format!("output_dir={}", dir.path().join("run").display());
    let sets = [out_set.as_str(), "max_kl=1e-4", "learning_rate=0.05", "save_steps=1", "max_steps=6"];
    let mut args = vec!["grpo", "--config", "examples/grpo.toml"];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_reins")).args(&args).current_dir(&root).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "grpo with max_kl = 1e-4 ran to the end:\n{err}");
    assert!(err.contains("max_kl") && err.contains("KL to the reference"), "{err}");
}

/// PF-PPO's own rule picks the filter: `pf_filter = "auto"` samples `pf_num_samples`
/// completions per prompt from the initial policy, scores them with the reward and with the
/// held-out scorer, and keeps the filter whose kept responses have the highest R².
#[test]
fn ppo_cli_chooses_the_pf_filter_by_r_squared() {
    // Two rules that disagree on the fixture's samples: the R² differ between filters.
    let sets = [
        "reward=\"contains:e\"",
        "pf_filter=\"auto\"",
        "pf_num_samples=4",
        "pf_heldout_reward=\"contains:t\"",
        "response_length=6",
    ];
    let (_dir, out) = run_with_sets("ppo", "examples/ppo.toml", &["reward"], &sets);
    let p = out.join("checkpoint-2/trainer_state.json");
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let choice = &state["trainer"]["pf_choice"];
    let r2 = choice["r2"].as_object().unwrap_or_else(|| panic!("no R² per filter recorded: {state}"));
    for name in ["none", "best_of_n", "best_random", "best_worst"] {
        let v = r2.get(name).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&v), "R² of {name}: {v} in {choice}");
    }
    let chosen = choice["chosen"].as_str().unwrap();
    let best = r2.values().filter_map(|v| v.as_f64()).fold(f64::MIN, f64::max);
    assert!(best > 0.0, "no filter's samples relate reward and held-out score: {choice}");
    assert_eq!(r2[chosen].as_f64(), Some(best), "{choice}");
    if chosen != "none" {
        let first = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert!(first.contains("pf/kept_fraction"), "filter {chosen} chosen but not applied: {first}");
    }
}

#[test]
fn ppo_cli_auto_filter_without_held_out_scores_says_what_to_set() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["ppo", "--config", "examples/ppo.toml", "--set", "pf_filter=\"auto\"", "--set", "pf_num_samples=4"])
        .current_dir(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("pf_heldout_reward"), "{err}");
}

/// A reward ensemble whose member folder is missing: the loader's error keeps its own message
/// (not flattened into "invalid input: ...") and the binary prints it under `reins:` with the
/// cause chain.
#[test]
fn a_missing_ensemble_member_prints_reins_and_the_cause_chain() {
    use reins_train::losses::EnsembleAggregation;
    use reins_train::trainers::reward_ensemble::EnsembleManifest;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let ensemble = dir.path().join("ensemble");
    std::fs::create_dir(&ensemble).unwrap();
    EnsembleManifest { members: vec!["member-0".into()], aggregation: EnsembleAggregation::Mean }
        .write(&ensemble)
        .unwrap();
    let out_set = format!("output_dir={}", dir.path().join("run").display());
    let path_set = format!("reward_model_path={}", ensemble.display());
    let args =
        ["grpo", "--config", "examples/grpo.toml", "--set", &out_set, "--set", "reward=model", "--set", &path_set];
    let o = Command::new(env!("CARGO_BIN_EXE_reins")).args(args).current_dir(&root).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "grpo ran with a missing ensemble member:\n{err}");
    let member = ensemble.join("member-0").join("config.json");
    let want = format!("reins: reward ensemble {}\n  caused by: {}: ", ensemble.display(), member.display());
    assert!(err.contains(&want), "want {want:?} in:\n{err}");
    assert!(err.trim_end().ends_with("(os error 2)") && !err.contains("invalid input"), "{err}");
    assert_eq!(err.matches("caused by").count(), 1, "the I/O error is printed once:\n{err}");
}

/// Fine-Grained RLHF from the CLI: a segment model and a holistic reward model trained by
/// `reins segment-reward` and `reins reward`, combined in a reward file, give PPO dense rewards
/// (`objective/token_rewards`); a file naming no model is refused.
#[test]
fn ppo_cli_runs_with_fine_grained_rewards() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let train = |cmd: &str, config: &str, out: &str| {
        let out_set = format!("output_dir={}", dir.path().join(out).display());
        let o = Command::new(env!("CARGO_BIN_EXE_reins"))
            .args([cmd, "--config", config, "--set", &out_set, "--set", "max_steps=2", "--set", "save_steps=2"])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
    };
    train("segment-reward", "examples/segment_reward.toml", "seg");
    train("reward", "examples/reward.toml", "rm");
    let spec = dir.path().join("fg.toml");
    std::fs::write(
        &spec,
        format!(
            "[[segment]]\npath = \"{}\"\nweight = 0.5\n[holistic]\npath = \"{}\"\nweight = 0.3\nmean = 0.1\nstd = 2.0\n",
            dir.path().join("seg/checkpoint-2").display(),
            dir.path().join("rm/checkpoint-2").display()
        ),
    )
    .unwrap();
    let reward = format!("reward=\"fine_grained:{}\"", spec.display());
    let (_d, out) = run_with_sets("ppo", "examples/ppo.toml", &["objective/token_rewards", "reward"], &[&reward]);
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert!(first["objective/token_rewards"].as_f64().unwrap().abs() > 0.0, "{first}");

    std::fs::write(&spec, "").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["ppo", "--config", "examples/ppo.toml", "--set", &reward, "--set", "max_steps=1"])
        .current_dir(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("lists no reward model"), "{err}");
}

/// A sequence-to-sequence reward model from `reins seq2seq-reward` scores PPO's samples token by
/// token (`objective/token_rewards`, ±1 per token) and GRPO's by their sum; a folder that is not
/// one is refused by name.
#[test]
fn seq2seq_rewards_reach_ppo_per_token_and_grpo_summed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out_set = format!("output_dir={}", dir.path().join("s2s").display());
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["seq2seq-reward", "--config", "examples/seq2seq_reward.toml", "--set", &out_set, "--set", "max_steps=2"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reward = format!("reward=\"seq2seq:{}\"", dir.path().join("s2s/checkpoint-2").display());
    let (_d, out) = run_with_sets("ppo", "examples/ppo.toml", &["objective/token_rewards"], &[&reward]);
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    // examples/ppo.toml samples 16 tokens per answer: the sum of ±1 per token lies in [−16, 16]
    let t = first["objective/token_rewards"].as_f64().unwrap();
    assert!(t != 0.0 && t.abs() <= 16.0, "{first}");
    assert_eq!(first["objective/scores"], 0.0, "nothing at the last token: {first}");
    let (_d, out) = run_with_sets("grpo", "examples/grpo.toml", &["reward"], &[&reward]);
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert!(first["reward"].as_f64().unwrap() != 0.0, "GRPO gets the summed token rewards: {first}");

    let bad = format!("reward=\"seq2seq:{}\"", root.join("fixtures/hf/models/llama").display());
    let o = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["ppo", "--config", "examples/ppo.toml", "--set", &bad, "--set", "max_steps=1"])
        .current_dir(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("seq2seq_reward.json"), "{err}");
}
