//! End to end: `reins reward --set metarm_dataset=FILE` (MetaRM, Secrets of RLHF II §3.2) on the
//! shipped pairs and a file of unlabelled policy samples: the difference J is logged, η = 0 is
//! exactly the plain run, a resumed run is exact, and malformed samples are named by line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(out: &Path, extra: &[String]) -> (bool, String) {
    let o = format!("output_dir=\"{}\"", out.display());
    let mut args = vec!["reward".to_string(), "--config".into(), "examples/reward.toml".into(), "--set".into(), o];
    for e in extra {
        args.push("--set".into());
        args.push(e.clone());
    }
    let r = Command::new(env!("CARGO_BIN_EXE_reins")).args(&args).current_dir(root()).output().unwrap();
    (r.status.success(), format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr)))
}

fn ok(out: &Path, extra: &[String]) -> String {
    let (good, text) = run(out, extra);
    assert!(good, "reins reward {extra:?} failed:\n{text}");
    text
}

fn weights(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn same(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> bool {
    a.iter().all(|(k, t)| {
        let d: f32 = (t - &b[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        d == 0.0
    })
}

#[test]
fn metarm_logs_its_difference_matches_plain_at_eta_zero_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.jsonl");
    let lines = [
        r#"{"prompt": "\n\nHuman: Say hi.\n\nAssistant:", "completions": [" Hi!", " Hello there, friend.", " No."]}"#,
        r#"{"prompt": "\n\nHuman: Count to three.\n\nAssistant:", "completions": [" 1 2 3", " one", " 1, 2, 3, 4"]}"#,
        r#"{"prompt": "\n\nHuman: Name a colour.\n\nAssistant:", "completions": [" Blue.", " Red", " I like green."]}"#,
    ];
    std::fs::write(&samples, lines.join("\n")).unwrap();
    let meta = format!("metarm_dataset=\"{}\"", samples.display());
    let set = |extra: &[&str]| -> Vec<String> {
        [meta.as_str(), "metarm_prompts_per_batch=2"].iter().chain(extra).map(|s| s.to_string()).collect()
    };

    // η = 0: the same weights as a run without MetaRM.
    let (zero, plain) = (dir.path().join("zero"), dir.path().join("plain"));
    ok(&zero, &set(&["metarm_eta=0", "max_steps=2", "save_steps=2"]));
    ok(&plain, &["max_steps=2".into(), "save_steps=2".into()]);
    let w0 = weights(&zero.join("checkpoint-2/model.safetensors"));
    assert!(same(&w0, &weights(&plain.join("checkpoint-2/model.safetensors"))));

    // η > 0: J logged each step, the weights differ from plain, and resume is exact.
    let out = dir.path().join("run");
    let args = set(&["metarm_eta=50", "max_steps=4", "save_steps=2"]);
    ok(&out, &args);
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let j: Vec<f64> = metrics.iter().filter_map(|m| m["metarm/difference"].as_f64()).collect();
    // k = 3: J lies in [1/3, 2/3).
    assert!(j.len() >= 4 && j.iter().all(|x| (1.0 / 3.0..2.0 / 3.0).contains(x)), "{j:?}");
    let end = weights(&out.join("checkpoint-4/model.safetensors"));
    std::fs::remove_dir_all(out.join("checkpoint-4")).unwrap();
    assert!(ok(&out, &args).contains("resuming from"));
    assert!(same(&end, &weights(&out.join("checkpoint-4/model.safetensors"))), "resumed run differs");
    let w2 = weights(&out.join("checkpoint-2/model.safetensors"));
    assert!(!same(&w2, &w0), "η = 50 trained exactly as η = 0");

    // Bad input is named.
    let (good, text) = run(&dir.path().join("bad"), &set(&["gradient_accumulation_steps=2"]));
    assert!(!good && text.contains("gradient_accumulation_steps = 1"), "{text}");
    std::fs::write(&samples, [lines[0], r#"{"prompt": "x", "completions": [" only one"]}"#].join("\n")).unwrap();
    let (good, text) = run(&dir.path().join("bad"), &set(&[]));
    assert!(!good && text.contains("line 2") && text.contains("k >= 2"), "{text}");
}
