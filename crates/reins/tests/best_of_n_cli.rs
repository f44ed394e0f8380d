//! `reins best-of-n` end to end on the tiny Llama fixture: one best line per prompt in TRL's
//! prompt/completion form, the best score is the maximum of that prompt's samples, rule and
//! reward-model-folder rewards, and clear errors on a bad reward spec.

#[path = "common/cli.rs"]
mod cli;
use cli::{lines, reins};

#[test]
fn best_of_n_writes_the_best_completion_per_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let (best, all) = (dir.path().join("best.jsonl"), dir.path().join("all.jsonl"));
    let base = ["best-of-n", "--model", "fixtures/hf/models/llama", "--prompts", "examples/data/pairs.jsonl"];
    let mut args = base.to_vec();
    args.extend(["--n", "4", "--max-new-tokens", "12", "--reward", "length"]);
    args.extend(["--out", best.to_str().unwrap(), "--all", all.to_str().unwrap()]);
    let (ok, text) = reins(&args);
    assert!(ok, "{text}");
    let (best_lines, all_lines) = (lines(&best), lines(&all));
    assert_eq!(best_lines.len(), 4, "one line per prompt of examples/data/pairs.jsonl");
    assert_eq!(all_lines.len(), 16);
    for (i, b) in best_lines.iter().enumerate() {
        assert!(b["prompt"].is_string() && b["completion"].is_string(), "{b}");
        let group = &all_lines[4 * i..4 * (i + 1)];
        let max = group.iter().map(|l| l["score"].as_f64().unwrap()).fold(f64::MIN, f64::max);
        assert_eq!(b["score"].as_f64().unwrap(), max);
        assert_eq!(group.iter().filter(|l| l["best"] == true).count(), 1);
        assert!(group.iter().all(|l| l["prompt"] == b["prompt"]));
    }

    // A reward model folder, and two rewards as a min-ensemble.
    let mut args = base.to_vec();
    args.extend(["--n", "2", "--max-new-tokens", "6", "--reward", "fixtures/hf/models/llama-rm"]);
    args.extend(["--reward", "length", "--ensemble", "min", "--out", best.to_str().unwrap()]);
    let (ok, text) = reins(&args);
    assert!(ok, "{text}");
    assert_eq!(lines(&best).len(), 4);

    let mut args = base.to_vec();
    args.extend(["--reward", "no-such-reward", "--out", best.to_str().unwrap()]);
    let (ok, text) = reins(&args);
    assert!(!ok && text.contains("no-such-reward") && text.contains("contains:"), "{text}");
}
