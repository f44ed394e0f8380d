//! End to end: `reins reward` with `strength_report` (noise-aware training, Secrets of RLHF II
//! §2.4–2.5) on the shipped example: the pairs the report marks weakest are flipped, the
//! treatment is written per pair, and bad settings or a report that does not fit the data
//! stop with a message that says what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reins")).args(args).current_dir(root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

fn example(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["reward", "--config", "examples/reward_denoise.toml", "--set"].iter().map(|s| s.to_string()).collect();
    args.push(format!("output_dir=\"{}\"", out.display()));
    for e in extra {
        args.push("--set".into());
        args.push(e.to_string());
    }
    args
}

fn ok(args: &[String]) -> String {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, text) = run(&a);
    assert!(out.status.success(), "reins {a:?} failed:\n{text}");
    text
}

fn fails(args: &[String]) -> String {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, text) = run(&a);
    assert!(!out.status.success(), "reins {a:?} should have failed:\n{text}");
    assert!(!text.contains("panicked"), "reins {a:?} panicked:\n{text}");
    text
}

fn jsonl(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_example_flips_the_two_planted_pairs_and_logs_each_treatment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&example(&out, &[]));
    let rows = jsonl(&out.join("strength_treatment.jsonl"));
    assert_eq!(rows.len(), 12);
    // p3 and p8 (records 4 and 9) are the wrong-way pairs; the report gives them the two
    // lowest (negative) means, so the bottom 20 % (⌊2.4⌋ = 2 pairs) below 0 are exactly them.
    let flipped: Vec<u64> =
        rows.iter().filter(|r| r["flipped"] == true).map(|r| r["record"].as_u64().unwrap()).collect();
    assert_eq!(flipped, [4, 9]);
    for r in &rows {
        // After the flip every strength is positive: no pair left to smooth; margin = 1.0 · strength.
        assert!(r["strength"].as_f64().unwrap() > 0.0 && r["label_smoothing"] == 0.0, "{r}");
        assert_eq!(r["margin"], r["strength"], "{r}");
    }
    let metrics = jsonl(&out.join("metrics.jsonl"));
    let last = metrics.last().unwrap();
    assert_eq!(last["denoise/flipped"], 2.0, "{last}");
    let losses: Vec<f64> = metrics.iter().filter_map(|l| l["loss"].as_f64()).collect();
    assert!(losses.len() >= 6 && losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("strength_report = \"examples/data/noisy_pairs.strength.jsonl\""), "{config}");

    // Without flips the two negative pairs are label-smoothed instead (§2.5 "Soft Label + Margin").
    let out2 = dir.path().join("smooth");
    ok(&example(&out2, &["strength_flip_fraction=0", "max_steps=1"]));
    let rows = jsonl(&out2.join("strength_treatment.jsonl"));
    let smoothed: Vec<u64> =
        rows.iter().filter(|r| r["label_smoothing"] == 0.1).map(|r| r["record"].as_u64().unwrap()).collect();
    assert_eq!(smoothed, [4, 9]);
    assert!(rows.iter().all(|r| r["flipped"] == false));
    assert_eq!(rows[3]["soft_label"], 0.9, "{}", rows[3]);
    assert!(rows[3]["margin"].as_f64().unwrap() < 0.0, "a doubtful pair gets a negative margin: {}", rows[3]);
}

#[test]
fn bad_settings_and_mismatched_reports_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // Strength keys without a report.
    let e = fails(&example(&out, &["strength_report=\"\"", "max_steps=1"]));
    assert!(e.contains("strength_report"), "{e}");
    let mut args = example(&out, &["strength_flip_fraction=0.3"]);
    let at = args.iter().position(|a| a == "examples/reward_denoise.toml").unwrap();
    args[at] = "examples/reward.toml".into();
    let e = fails(&args);
    assert!(e.contains("set strength_report"), "{e}");
    // Out of range, and a typo.
    let e = fails(&example(&out, &["strength_flip_fraction=1.5"]));
    assert!(e.contains("strength_flip_fraction") && e.contains("[0, 1]"), "{e}");
    let e = fails(&example(&out, &["strength_flip_fraccion=0.1"]));
    assert!(e.contains("strength_flip_fraccion") && e.contains("strength_flip_fraction"), "{e}");
    // A report of other pairs (the eval split's, say).
    let e = fails(&example(&out, &["dataset=\"examples/data/pairs.jsonl\""]));
    assert!(e.contains("4 of 4 training pairs have no row") && e.contains("hint:"), "{e}");
    // A file that is not a strength report.
    let e = fails(&example(&out, &["strength_report=\"examples/data/pairs.jsonl\""]));
    assert!(e.contains("line 1") && e.contains("not a preference-strength row"), "{e}");
    let e = fails(&example(&out, &["strength_report=\"no/such/file.jsonl\""]));
    assert!(e.contains("no/such/file.jsonl"), "{e}");
}
