//! End to end: `reins reward --set annotator_rationality=true` learns a β per annotator, writes
//! them to `annotator_rationality.json` (output folder and checkpoints), logs them, resumes with
//! them, and refuses rows without an annotator id.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reins(out: &Path, extra: &[&str]) -> (bool, String) {
    let o = format!("output_dir=\"{}\"", out.display());
    let mut args = vec!["reward", "--config", "examples/reward_rationality.toml", "--set", &o];
    for e in extra {
        args.extend_from_slice(&["--set", e]);
    }
    let run = Command::new(env!("CARGO_BIN_EXE_reins")).args(&args).current_dir(root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    (run.status.success(), text)
}

fn betas(p: &Path) -> Vec<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["annotators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["annotator_id"].as_str().unwrap().to_string(), a["beta"].as_f64().unwrap()))
        .collect()
}

#[test]
fn learns_a_beta_per_annotator_and_refuses_rows_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (ok, text) = reins(&out, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("annotator rationality: 3 annotators over 12 pairs"), "{text}");
    let b = betas(&out.join("annotator_rationality.json"));
    assert_eq!(b.len(), 3, "{b:?}");
    // Mean ln β is 0; the careless annotator (two of its four pairs the wrong way round) ends last.
    let mean_log: f64 = b.iter().map(|(_, x)| x.ln()).sum::<f64>() / 3.0;
    assert!(mean_log.abs() < 1e-9, "{b:?}");
    assert_eq!(b[2].0, "ann-careless", "{b:?}");
    assert!(b.iter().all(|(_, x)| x.is_finite() && *x > 0.0));
    assert!(out.join("checkpoint-6").join("annotator_rationality.json").exists());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("rationality/beta_min") && metrics.contains("rationality/beta/ann-careless"));
    // A resumed run picks up the β's of its checkpoint and lands where the full run did.
    std::fs::remove_dir_all(out.join("checkpoint-12")).unwrap();
    let (ok, text) = reins(&out, &[]);
    assert!(ok && text.contains("resuming from"), "{text}");
    let again = betas(&out.join("annotator_rationality.json"));
    for ((a, x), (c, y)) in b.iter().zip(&again) {
        assert!(a == c && (x - y).abs() < 1e-6, "{b:?} vs {again:?}");
    }
    // Eval pairs of annotators the training data lacks are scored at beta = 1.
    let (ok, text) =
        reins(&dir.path().join("eval"), &["max_steps=2", "eval_steps=1", "eval_dataset=\"examples/data/pairs.jsonl\""]);
    assert!(ok, "{text}");
    // Rows without annotator ids: a clear error naming the key.
    let (ok, text) = reins(&dir.path().join("bad"), &["dataset=\"examples/data/pairs.jsonl\""]);
    assert!(!ok && text.contains("has no annotator_id"), "{text}");
    // Not with an ensemble.
    let (ok, text) = reins(&dir.path().join("ens"), &["ensemble_size=2"]);
    assert!(!ok && text.contains("annotator_rationality"), "{text}");
}
