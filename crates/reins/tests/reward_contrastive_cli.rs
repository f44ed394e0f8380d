//! End to end: `reins reward --set contrastive_coef=β` (SimCSE InfoNCE on the preference
//! difference, Secrets of RLHF II §3.1): the term is logged, reaches the transformer body but
//! not the score head, and a resumed run lands on the same weights (dropout masks are seeded).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reins(out: &Path, extra: &[&str]) -> String {
    let o = format!("output_dir=\"{}\"", out.display());
    let mut args = vec!["reward", "--config", "examples/reward.toml", "--set", &o];
    for e in extra {
        args.extend_from_slice(&["--set", e]);
    }
    let run = Command::new(env!("CARGO_BIN_EXE_reins")).args(&args).current_dir(root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "reins {args:?} failed:\n{text}");
    text
}

fn tensors(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn contrastive_term_trains_the_body_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // One step with and without the term: the score head sees the same gradient (InfoNCE does
    // not read it; Adam's first step is lr·g/(|g| + eps), so a clipped, rescaled gradient moves
    // it by the same amount up to eps), the body does not (differences of order lr = 1e-3).
    let (plain, cl) = (dir.path().join("plain"), dir.path().join("cl"));
    reins(&plain, &["max_steps=1", "save_steps=1"]);
    reins(&cl, &["max_steps=1", "save_steps=1", "contrastive_coef=1.0"]);
    let (p, c) =
        (tensors(&plain.join("checkpoint-1/model.safetensors")), tensors(&cl.join("checkpoint-1/model.safetensors")));
    let head = max_abs_diff(&p["score.weight"], &c["score.weight"]);
    assert!(head < 1e-6, "score head moved differently: {head}");
    let body =
        ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight"];
    for k in body {
        assert!(max_abs_diff(&p[k], &c[k]) > 1e-5, "{k}: the contrastive term did not reach it");
    }
    // Four steps, logged term, exact resume from step 2.
    let out = dir.path().join("run");
    let args = ["max_steps=4", "save_steps=2", "contrastive_coef=0.5", "contrastive_on=\"responses\""];
    reins(&out, &args);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cls: Vec<f64> = lines.iter().filter_map(|l| l["contrastive_loss"].as_f64()).collect();
    assert!(cls.len() >= 4 && cls.iter().all(|x| x.is_finite() && *x > 0.0), "{cls:?}");
    let end = tensors(&out.join("checkpoint-4/model.safetensors"));
    std::fs::remove_dir_all(out.join("checkpoint-4")).unwrap();
    assert!(reins(&out, &args).contains("resuming from"));
    let resumed = tensors(&out.join("checkpoint-4/model.safetensors"));
    for (k, t) in &end {
        assert_eq!(max_abs_diff(t, &resumed[k]), 0.0, "resumed {k} differs");
    }
    // A bad value names its key.
    let bad = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["reward", "--config", "examples/reward.toml", "--set", "contrastive_temperature=0"])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("contrastive_temperature"), "{err}");
}

/// `contrastive_loss = "swav"`: SwAV's swapped prediction over learned prototypes. The term is
/// logged, the prototypes learn and travel in `trainer_extra.safetensors`, and a resumed run
/// lands on the same weights and prototypes.
#[test]
fn swav_term_learns_its_prototypes_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args =
        ["max_steps=4", "save_steps=2", "contrastive_coef=1.0", "contrastive_loss=\"swav\"", "swav_prototypes=8"];
    reins(&out, &args);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cls: Vec<f64> = lines.iter().filter_map(|l| l["contrastive_loss"].as_f64()).collect();
    assert!(cls.len() >= 4 && cls.iter().all(|x| x.is_finite() && *x > 0.0), "{cls:?}");
    let protos = |step: usize| {
        tensors(&out.join(format!("checkpoint-{step}/trainer_extra.safetensors")))["swav.prototypes"].clone()
    };
    let (p2, p4) = (protos(2), protos(4));
    assert_eq!(p2.dims()[0], 8);
    assert!(max_abs_diff(&p2, &p4) > 0.0, "the prototypes did not learn");
    let end = tensors(&out.join("checkpoint-4/model.safetensors"));
    std::fs::remove_dir_all(out.join("checkpoint-4")).unwrap();
    assert!(reins(&out, &args).contains("resuming from"));
    let resumed = tensors(&out.join("checkpoint-4/model.safetensors"));
    for (k, t) in &end {
        assert_eq!(max_abs_diff(t, &resumed[k]), 0.0, "resumed {k} differs");
    }
    assert_eq!(max_abs_diff(&p4, &protos(4)), 0.0, "resumed prototypes differ");
    let bad = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args([
            "reward",
            "--config",
            "examples/reward.toml",
            "--set",
            "contrastive_coef=1",
            "--set",
            "contrastive_loss=\"swav\"",
            "--set",
            "swav_prototypes=1",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("swav_prototypes"), "{err}");
}
