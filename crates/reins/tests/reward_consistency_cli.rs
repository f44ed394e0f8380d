//! `reins reward-stats consistency` on the fixture reward model and the shipped contrast
//! example: the items are the hand-picked near-duplicate prompts, the printed counts match the
//! JSON report and the report's own rewards, and bad input gets a message that says what to do.

#[path = "common/cli.rs"]
mod cli;
use cli::reins;

const RM: &str = "fixtures/hf/models/llama-rm";
const DATA: &str = "examples/data/contrast_pairs.jsonl";

#[test]
fn consistency_report_on_the_fixture_rm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("consistency.json");
    let cmd = ["reward-stats", "consistency", "--model", RM, "--pairs", DATA, "--out", out.to_str().unwrap()];
    let (ok, text) = reins(&cmd);
    assert!(ok, "{text}");
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    // Word Jaccard of the example's prompts (with "human", "assistant"): 17+25 / 17+26 9/12,
    // France / Spain 7/9, one sentence / in detail 9/12; the greeting pairs with nothing.
    let items = rep["contrast_items"].as_array().unwrap();
    let pairs: Vec<(u64, u64, f64)> = items
        .iter()
        .map(|i| (i["record_1"].as_u64().unwrap(), i["record_2"].as_u64().unwrap(), i["similarity"].as_f64().unwrap()))
        .collect();
    assert_eq!(pairs.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), [(1, 3), (2, 4), (5, 6)]);
    for (p, want) in pairs.iter().zip([0.75, 7.0 / 9.0, 0.75]) {
        assert!((p.2 - want).abs() < 1e-12, "{p:?}");
    }
    assert_eq!(rep["preference_records"], 7);
    // Both consistencies recomputed from the report's rewards.
    let (mut resp, mut inst) = (0u64, 0u64);
    for i in items {
        let r = |k: &str| i[k].as_f64().unwrap();
        let (s11, s12, s21, s22) = (r("r_i1_r1"), r("r_i1_r2"), r("r_i2_r1"), r("r_i2_r2"));
        assert!([s11, s12, s21, s22].iter().all(|x| x.is_finite()));
        resp += u64::from(s11 > s12) + u64::from(s22 > s21);
        inst += u64::from(s11 > s21) + u64::from(s22 > s12);
    }
    assert_eq!(rep["response_consistency"]["consistent"], resp);
    assert_eq!(rep["instruction_consistency"]["consistent"], inst);
    assert_eq!(rep["response_consistency"]["total"], 6);
    assert!(
        text.contains("3 contrast items from 7 preference records")
            && text.contains(&format!("response consistency {:.3} ({resp}/6)", resp as f64 / 6.0))
            && text.contains(&format!("instruction consistency {:.3} ({inst}/6)", inst as f64 / 6.0)),
        "{text}"
    );

    // A stricter τ keeps only France / Spain (7/9 ≥ 0.76 > 0.75).
    let (ok, text) = reins(&[&cmd[..], &["--tau", "0.76", "--force"]].concat());
    assert!(ok && text.contains("1 contrast items"), "{text}");
    // The report is not overwritten without --force.
    let (again, text) = reins(&cmd);
    assert!(!again && text.contains("--force"), "{text}");
}

#[test]
fn consistency_bad_input_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.json");
    let run = |pairs: &str, extra: &[&str]| {
        reins(
            &[&["reward-stats", "consistency", "--model", RM, "--pairs", pairs, "--out", out.to_str().unwrap()], extra]
                .concat(),
        )
    };
    let (ok, text) = run(DATA, &["--tau", "0.9"]);
    assert!(!ok && text.contains("lower --tau"), "{text}");
    let (ok, text) = run(DATA, &["--tau", "0"]);
    assert!(!ok && text.contains("(0, 1]"), "{text}");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a b\", \"chosen\": \"x\", \"rejected\": \"y\"}\n{not json\n").unwrap();
    let (ok, text) = run(bad.to_str().unwrap(), &[]);
    // The reader's report names what it skipped; one record left is too few to pair.
    assert!(
        !ok && text.contains("skipped 1: invalid JSON") && text.contains("at least two preference records"),
        "{text}"
    );
    let (ok, text) = reins(&[
        "reward-stats",
        "consistency",
        "--model",
        "fixtures/hf/models/llama",
        "--pairs",
        DATA,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("not a reward model"), "{text}");
}

fn scores(p: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["score"].as_f64().unwrap())
        .collect()
}

#[test]
fn fusion_reward_in_best_of_n_and_grpo() {
    let dir = tempfile::tempdir().unwrap();
    let bon = |reward: &str, name: &str| {
        let all = dir.path().join(format!("{name}-all.jsonl"));
        let best = dir.path().join(format!("{name}-best.jsonl"));
        let (ok, text) = reins(&[
            "best-of-n",
            "--model",
            "fixtures/hf/models/llama",
            "--prompts",
            "examples/data/pairs.jsonl",
            "--n",
            "3",
            "--max-new-tokens",
            "6",
            "--reward",
            reward,
            "--out",
            best.to_str().unwrap(),
            "--all",
            all.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        scores(&all)
    };
    let fusion = format!("fusion:{RM}:examples/data/pairs.jsonl");
    let plain = bon(RM, "plain");
    // The random fixture RM's samples have no training text at cosine ≥ 0.9: the paper's
    // defaults leave every reward as it was.
    let default = bon(&fusion, "default");
    // Every training text with cosine ≥ 0 fused in: a different reward for some sample.
    let wide = bon(&format!("{fusion}:5:0"), "wide");
    assert_eq!(plain.len(), 12);
    for (p, d) in plain.iter().zip(&default) {
        assert!((p - d).abs() < 1e-4, "{p} vs {d}");
    }
    assert!(wide.iter().all(|w| w.is_finite()));
    assert!(plain.iter().zip(&wide).any(|(p, w)| (p - w).abs() > 1e-3), "{plain:?} {wide:?}");

    // The online trainers take the same spec.
    let grpo = dir.path().join("grpo");
    let (ok, text) = reins(&[
        "grpo",
        "--config",
        "examples/grpo_fusion.toml",
        "--set",
        &format!("output_dir=\"{}\"", grpo.display()),
        "--set",
        &format!("reward=\"{fusion}:5:0\""),
        "--set",
        "max_steps=2",
        "--set",
        "max_completion_length=6",
    ]);
    assert!(ok, "{text}");
    let metrics = std::fs::read_to_string(grpo.join("metrics.jsonl")).unwrap();
    let rewards: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reward"].as_f64())
        .collect();
    assert!(!rewards.is_empty() && rewards.iter().all(|r| r.is_finite()), "{rewards:?}");

    // Bad specs say what to write.
    let out = dir.path().join("x.jsonl");
    for (spec, want) in [
        (format!("fusion:{RM}"), "fusion:<reward model dir>:<its training pairs file>"),
        (format!("{fusion}:0:0.9"), "top_k must be at least 1"),
        (format!("fusion:{RM}:examples/data/none.jsonl"), "none.jsonl"),
    ] {
        let (ok, text) = reins(&[
            "best-of-n",
            "--model",
            "fixtures/hf/models/llama",
            "--prompts",
            "examples/data/pairs.jsonl",
            "--reward",
            &spec,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!ok && text.contains(want), "{spec}: {text}");
    }
}

#[test]
fn convex_da_adds_hull_pairs_to_reward_training() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("rm");
    let out_set = format!("output_dir=\"{}\"", run.display());
    let (ok, text) = reins(&[
        "reward",
        "--config",
        "examples/reward.toml",
        "--set",
        &out_set,
        "--set",
        "convex_da=true",
        "--set",
        "max_steps=2",
    ]);
    assert!(ok, "{text}");
    // 5 variants of each of the 4 preferred responses: a 2-D hull keeps 3 to 5 of them.
    let added: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("ConvexDA: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((12..=20).contains(&added), "{text}");
    assert!(text.contains(&format!("tokenized: {} pairs kept of {} records", 4 + added, 4 + added)), "{text}");
    let cfg = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(cfg.contains("convex_da = true") && cfg.contains("convex_da_variants = 5"), "{cfg}");

    // Ranked lists are not pairs; a two-variant hull is refused with the paper's value.
    let (ok, text) = reins(&[
        "reward",
        "--config",
        "examples/reward.toml",
        "--set",
        &out_set,
        "--set",
        "convex_da=true",
        "--set",
        "dataset=\"examples/data/ranked.jsonl\"",
        "--set",
        "eval_dataset=\"examples/data/ranked.jsonl\"",
    ]);
    assert!(!ok && text.contains("listwise = false"), "{text}");
    let (ok, text) =
        reins(&["reward", "--config", "examples/reward.toml", "--set", &out_set, "--set", "convex_da_variants=2"]);
    assert!(!ok && text.contains("the paper uses 5"), "{text}");
    // Denoising matches report rows to training pairs by text: the added pairs have none.
    let (ok, text) = reins(&[
        "reward",
        "--config",
        "examples/reward.toml",
        "--set",
        &out_set,
        "--set",
        "convex_da=true",
        "--set",
        "strength_report=\"no/such/preference_strength.jsonl\"",
    ]);
    assert!(!ok && text.contains("use one of the two per run"), "{text}");
}

#[test]
fn consistency_with_reward_fusion() {
    let dir = tempfile::tempdir().unwrap();
    let report = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        let (ok, text) = reins(
            &[&["reward-stats", "consistency", "--model", RM, "--pairs", DATA, "--out", out.to_str().unwrap()], extra]
                .concat(),
        );
        assert!(ok, "{text}");
        let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        (rep, text)
    };
    let rewards = |rep: &serde_json::Value| -> Vec<f64> {
        rep["contrast_items"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| ["r_i1_r1", "r_i1_r2", "r_i2_r1", "r_i2_r2"].map(|k| i[k].as_f64().unwrap()))
            .collect()
    };
    let (plain, _) = report(&[], "plain.json");
    assert!(plain["fusion"].is_null());
    // Every text of the set with cosine ≥ 0 fused in: other rewards, reported as such.
    let (fused, text) = report(&["--fusion", DATA, "--fusion-threshold", "0"], "fused.json");
    assert!(text.contains("RewardFusion scores"), "{text}");
    assert_eq!(fused["fusion"]["top_k"], 5);
    assert_eq!(fused["fusion"]["threshold"], 0.0);
    let (p, f) = (rewards(&plain), rewards(&fused));
    assert_eq!(p.len(), 12);
    assert!(p.iter().zip(&f).any(|(a, b)| (a - b).abs() > 1e-3), "{p:?} {f:?}");
    let (ok, text) = reins(&[
        "reward-stats",
        "consistency",
        "--model",
        RM,
        "--pairs",
        DATA,
        "--out",
        dir.path().join("x.json").to_str().unwrap(),
        "--fusion",
        DATA,
        "--fusion-top-k",
        "0",
    ]);
    assert!(!ok && text.contains("top_k must be at least 1"), "{text}");
}
