//! The reward-model statistics end to end on the shipped examples and fixture models: a
//! Thurstone reward model trains from `examples/reward_thurstone.toml`; `reins reward-stats
//! fit` writes its head posterior; `interval` writes intervals around each pair's reward
//! difference; `lcb:<λ>:<dir>` is a best-of-n and GRPO reward (λ = 0 is the plain reward, λ > 0
//! is lower); `select` picks the most uncertain pool pairs in the feedback import format; and
//! bad input gets a message that says what to do.

#[path = "common/cli.rs"]
mod cli;
use cli::{lines, ok, reins, s};

#[test]
fn thurstone_rm_posterior_and_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("rm");
    let out_set = format!("output_dir=\"{}\"", run.display());
    ok(&["reward", "--config", "examples/reward_thurstone.toml", "--set", &out_set]);
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("link = \"thurstone\""), "{resolved}");
    let losses: Vec<f64> = lines(&run.join("metrics.jsonl")).iter().filter_map(|l| l["loss"].as_f64()).collect();
    assert!(losses.len() >= 6 && losses.iter().all(|l| l.is_finite()), "{losses:?}");

    let ckpt = run.join("checkpoint-6");
    let post = dir.path().join("post");
    // The link comes from the run's config.toml; a contradicting --link is refused.
    let fit = ["reward-stats", "fit", "--model", s(&ckpt), "--pairs", "examples/data/pairs.jsonl", "--out", s(&post)];
    let (wrong, text) = reins(&[&fit[..], &["--link", "bradley_terry"]].concat());
    assert!(!wrong && text.contains("trained with link = \"thurstone\""), "{text}");
    let text = ok(&fit);
    assert!(text.contains("from 4 pairs") && text.contains("D = 64") && text.contains("thurstone link"), "{text}");
    assert!(post.join("head_posterior.json").exists() && post.join("head_posterior.safetensors").exists());
    // A second fit into the same folder needs --force.
    let (again, text) =
        reins(&["reward-stats", "fit", "--model", s(&ckpt), "--pairs", "examples/data/pairs.jsonl", "--out", s(&post)]);
    assert!(!again && text.contains("--force"), "{text}");

    let iv = dir.path().join("intervals.jsonl");
    ok(&["reward-stats", "interval", "--posterior", s(&post), "--pairs", "examples/data/pairs.jsonl", "--out", s(&iv)]);
    let rows = lines(&iv);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let (d, sd, lo, hi) = (
            r["difference"].as_f64().unwrap(),
            r["std"].as_f64().unwrap(),
            r["lower"].as_f64().unwrap(),
            r["upper"].as_f64().unwrap(),
        );
        assert!(sd > 0.0 && lo < d && d < hi, "{r}");
        assert!((hi - d - 1.959963984540054 * sd).abs() < 1e-9 * (1.0 + sd), "{r}");
        let p = r["p_chosen"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p) && (p > 0.5) == (d > 0.0), "{r}");
    }
    let (bad, text) = reins(&[
        "reward-stats",
        "interval",
        "--posterior",
        s(&dir.path().join("none")),
        "--pairs",
        "examples/data/pairs.jsonl",
        "--out",
        s(&iv),
        "--force",
    ]);
    assert!(!bad && text.contains("reins reward-stats fit"), "{text}");
}

#[test]
fn lcb_rewards_and_active_selection_on_the_fixture_rm() {
    let dir = tempfile::tempdir().unwrap();
    let post = dir.path().join("post");
    let rm = "fixtures/hf/models/llama-rm";
    ok(&["reward-stats", "fit", "--model", rm, "--pairs", "examples/data/pairs.jsonl", "--out", s(&post)]);

    // Best-of-n: lcb:0 scores every sample exactly as the plain reward model; lcb:5 lower.
    let bon = |reward: &str, name: &str| {
        let (best, all) = (dir.path().join(format!("{name}-best.jsonl")), dir.path().join(format!("{name}-all.jsonl")));
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
            "--reward",
            reward,
            "--out",
            s(&best),
            "--all",
            s(&all),
        ]);
        lines(&all).iter().map(|l| l["score"].as_f64().unwrap()).collect::<Vec<f64>>()
    };
    let plain = bon(rm, "plain");
    let zero = bon(&format!("lcb:0:{}", post.display()), "lcb0");
    let five = bon(&format!("lcb:5:{}", post.display()), "lcb5");
    assert_eq!(plain.len(), 12);
    for ((p, z), f) in plain.iter().zip(&zero).zip(&five) {
        assert!((p - z).abs() < 1e-4, "λ = 0: {z} vs plain {p}");
        assert!(f < p, "λ = 5: {f} not below plain {p}");
    }
    let (bad, text) = reins(&[
        "best-of-n",
        "--model",
        "fixtures/hf/models/llama",
        "--prompts",
        "examples/data/pairs.jsonl",
        "--reward",
        &format!("lcb:x:{}", post.display()),
        "--out",
        s(&dir.path().join("x.jsonl")),
    ]);
    assert!(!bad && text.contains("is not a number") && text.contains("lcb:<λ>"), "{text}");

    // GRPO from the example config with the LCB reward.
    let grpo = dir.path().join("grpo");
    ok(&[
        "grpo",
        "--config",
        "examples/grpo_lcb.toml",
        "--set",
        &format!("reward=\"lcb:1.0:{}\"", post.display()),
        "--set",
        &format!("output_dir=\"{}\"", grpo.display()),
        "--set",
        "max_steps=2",
        "--set",
        "max_completion_length=6",
    ]);
    let rewards: Vec<f64> = lines(&grpo.join("metrics.jsonl")).iter().filter_map(|l| l["reward"].as_f64()).collect();
    assert!(!rewards.is_empty() && rewards.iter().all(|r| r.is_finite()), "{rewards:?}");

    // Active selection: k lines of the pool, in its import format, most uncertain first.
    for acq in ["variance", "d_optimal"] {
        let sel = dir.path().join(format!("{acq}.jsonl"));
        let text = ok(&[
            "reward-stats",
            "select",
            "--posterior",
            s(&post),
            "--pool",
            "examples/data/pool.jsonl",
            "--k",
            "3",
            "--acquisition",
            acq,
            "--out",
            s(&sel),
        ]);
        assert!(text.contains("picked 3 of 6"), "{text}");
        let picked = lines(&sel);
        assert_eq!(picked.len(), 3);
        let scores: Vec<f64> = picked.iter().map(|l| l["uncertainty"]["score"].as_f64().unwrap()).collect();
        if acq == "variance" {
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        }
        for l in &picked {
            assert!(l["prompt"].is_string() && l["responses"].as_array().unwrap().len() == 2 && l["id"].is_string());
        }
        let mut ids: Vec<&str> = picked.iter().map(|l| l["id"].as_str().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }
    let bad_pool = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad_pool,
        "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"]}\n{\"prompt\": \"p\", \"responses\": [\"a\"]}\n",
    )
    .unwrap();
    let (bad, text) = reins(&[
        "reward-stats",
        "select",
        "--posterior",
        s(&post),
        "--pool",
        s(&bad_pool),
        "--k",
        "1",
        "--out",
        s(&dir.path().join("o.jsonl")),
    ]);
    assert!(!bad && text.contains("bad.jsonl:2") && text.contains("two string responses"), "{text}");
}
