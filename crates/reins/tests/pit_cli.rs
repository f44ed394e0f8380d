//! `reins pit data|improve` end to end on the shipped pairs and the tiny Llama fixture: the data
//! sets feed `reins sft` and `reins reward` as they are, and the improvement loop writes one
//! answer per round, scored.

use std::process::Command;

#[path = "common/cli.rs"]
mod cli;
use cli::{lines, ok as reins, root};

#[test]
fn pit_data_feeds_sft_and_reward_and_improve_scores_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pit");
    let o = out.display().to_string();
    reins(&["pit", "data", "--dataset", "examples/data/pairs.jsonl", "--out", &o]);
    let (sft, gap, prompts) =
        (lines(&out.join("sft.jsonl")), lines(&out.join("gap_pairs.jsonl")), lines(&out.join("prompts.jsonl")));
    let pairs = lines(&root().join("examples/data/pairs.jsonl"));
    assert_eq!((sft.len(), gap.len(), prompts.len()), (pairs.len(), 4 * pairs.len(), pairs.len()));
    // PIT SFT rewrites the rejected answer into the chosen one.
    let p0 = &pairs[0];
    let rejected = p0["rejected"].as_str().unwrap().trim();
    assert!(sft[0]["prompt"].as_str().unwrap().contains(rejected), "{}", sft[0]);
    assert_eq!(sft[0]["completion"], p0["chosen"]);
    assert_eq!(prompts[0]["prompt"], sft[0]["prompt"]);
    // The first comparison: the chosen answer after the rejected one beats it after itself.
    let chosen = p0["chosen"].as_str().unwrap();
    let (c, r) = (gap[0]["chosen"].as_str().unwrap(), gap[0]["rejected"].as_str().unwrap());
    assert!(c.ends_with(chosen) && r.ends_with(chosen) && c.contains(rejected) && c != r, "{}", gap[0]);

    let run = |cmd: &str, config: &str, data: &str, name: &str| {
        let set_data = format!("dataset=\"{}\"", out.join(data).display());
        let set_out = format!("output_dir=\"{}\"", dir.path().join(name).display());
        reins(&[
            cmd,
            "--config",
            config,
            "--set",
            &set_data,
            "--set",
            "eval_dataset=\"examples/data/pairs.jsonl\"",
            "--set",
            &set_out,
            "--set",
            "max_steps=2",
            "--set",
            "save_steps=2",
        ]);
    };
    run("sft", "examples/sft.toml", "sft.jsonl", "pit-sft");
    run("reward", "examples/reward.toml", "gap_pairs.jsonl", "gap-rm");

    let improved = dir.path().join("improved.jsonl");
    let text = reins(&[
        "pit",
        "improve",
        "--policy",
        "fixtures/hf/models/llama",
        "--pit",
        &dir.path().join("pit-sft/checkpoint-2").display().to_string(),
        "--prompts",
        "examples/data/pairs.jsonl",
        "--rounds",
        "2",
        "--max-new-tokens",
        "8",
        "--reward",
        "length",
        "--out",
        &improved.display().to_string(),
    ]);
    assert!(text.contains("round 2: mean reward"), "{text}");
    let rows = lines(&improved);
    assert_eq!(rows.len(), pairs.len());
    for r in &rows {
        assert_eq!(r["responses"].as_array().unwrap().len(), 3, "{r}");
        assert_eq!(r["scores"].as_array().unwrap().len(), 3, "{r}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["pit", "data", "--dataset", "examples/data/pairs.jsonl", "--out", &o, "--pit-template", "{prompt} only"])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("{reference}"), "{err}");
}
