//! Data parallelism under a real MPI launcher: `mpirun -np 2` on loopback takes the steps of one
//! process with the same global batch — SFT, reward model, DPO (with gradient accumulation) and
//! GRPO (each rank samples its own rows) — and a run checkpointed on two ranks resumes exactly on
//! one. Built only with `--features mpi`; needs Open MPI's `mpirun` (says "skipped" without it,
//! unless `REINS_TEST_MPI=1`, as in CI, makes that a failure).
#![cfg(feature = "mpi")]

#[path = "common/cli.rs"]
mod cli;

use std::path::Path;
use std::process::Command;

use cli::*;

/// Max |a − b| over the trainable weights of two checkpoints, and the largest |a|.
fn weight_gap(a: &Path, b: &Path) -> (f32, f32) {
    let load =
        |p: &Path| candle_core::safetensors::load(p.join("trainable.safetensors"), &candle_core::Device::Cpu).unwrap();
    let (a, b) = (load(a), load(b));
    assert_eq!(a.len(), b.len());
    let (mut gap, mut size) = (0f32, 0f32);
    for (k, x) in &a {
        let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b[k].flatten_all().unwrap().to_vec1().unwrap();
        for (u, v) in x.iter().zip(&y) {
            gap = gap.max((u - v).abs());
            size = size.max(u.abs());
        }
    }
    (gap, size)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn mpirun() -> Option<&'static str> {
    let found = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found && std::env::var("REINS_TEST_MPI").is_ok_and(|v| v == "1") {
        panic!("REINS_TEST_MPI=1 but `mpirun` was not found: install openmpi-bin");
    }
    found.then_some("mpirun")
}

/// `mpirun -np 2 reins args…` (as root too, and on a machine with fewer cores than ranks).
fn two_ranks(args: &[&str]) -> String {
    let o = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2"])
        .arg(env!("CARGO_BIN_EXE_reins"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "mpirun -np 2 reins {args:?} failed:\n{text}");
    text
}

/// One process with `per_device = 2 × local` and two ranks with `local` each, 3 steps: the same
/// weights within 1e-5 and the same loss every step.
fn same_steps(command: &str, config: &str, local: usize, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let run = |out: &Path, per_device: usize| -> Vec<String> {
        let mut a: Vec<String> = [command, "--config", config, "--set", "max_steps=3", "--set", "save_steps=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--set".into(), format!("output_dir={}", out.display())]);
        a.extend(["--set".into(), format!("per_device_train_batch_size={per_device}")]);
        for e in extra {
            a.extend(["--set".into(), e.to_string()]);
        }
        a
    };
    let a = run(&one, 2 * local);
    ok(&strs(&a));
    let b = run(&two, local);
    let text = two_ranks(&strs(&b));
    assert!(text.contains("data parallel: 2 ranks"), "{text}");
    let (gap, size) = weight_gap(&one.join("checkpoint-3"), &two.join("checkpoint-3"));
    eprintln!("{command}: weights differ by {gap:.2e} at most (largest weight {size:.3})");
    assert!(gap <= 1e-5, "{command}: two ranks' weights differ from one process's by {gap}");
    let (m1, m2) = (lines(&one.join("metrics.jsonl")), lines(&two.join("metrics.jsonl")));
    assert_eq!(m1.len(), m2.len(), "{command}: rank 0 alone writes the metrics");
    for (x, y) in m1.iter().zip(&m2).filter(|(x, _)| x.get("loss").is_some()) {
        for k in ["loss", "grad_norm", "num_tokens"] {
            let (u, v) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
            assert!((u - v).abs() <= 1e-5 * u.abs().max(1.0), "{command} step {}: {k} {u} vs {v}", x["step"]);
        }
    }
}

#[test]
fn two_ranks_take_the_steps_of_one_process() {
    if mpirun().is_none() {
        eprintln!("skipped: mpirun not found (install openmpi-bin)");
        return;
    }
    same_steps("sft", "examples/sft.toml", 2, &[]);
    same_steps("reward", "examples/reward.toml", 2, &[]);
    same_steps("dpo", "examples/dpo.toml", 1, &["gradient_accumulation_steps=2"]);
    // GRPO: each rank samples the rows of its two prompts; the DAPO normaliser and the
    // batch-scaled advantages need every rank's tokens and rewards.
    same_steps("grpo", "examples/grpo.toml", 1, &["loss_type=\"dapo\"", "scale_rewards=\"batch\""]);
}

#[test]
fn a_run_on_two_ranks_resumes_on_one() {
    if mpirun().is_none() {
        eprintln!("skipped: mpirun not found (install openmpi-bin)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (whole, split) = (dir.path().join("whole"), dir.path().join("split"));
    let set = |k: &str, v: String| ["--set".to_string(), format!("{k}={v}")];
    let args = |out: &Path, per_device: usize, steps: usize| -> Vec<String> {
        let mut a = vec!["dpo".to_string(), "--config".into(), "examples/dpo.toml".into()];
        a.extend(set("output_dir", out.display().to_string()));
        a.extend(set("per_device_train_batch_size", per_device.to_string()));
        a.extend(set("gradient_accumulation_steps", "1".into()));
        a.extend(set("max_steps", steps.to_string()));
        a.extend(set("save_steps", "2".into()));
        a
    };
    // One process, 4 steps of 4 pairs.
    ok(&strs(&args(&whole, 4, 4)));
    // Two ranks of 2 pairs stop after 2 steps; one process of 4 pairs finishes the run.
    two_ranks(&strs(&args(&split, 2, 2)));
    // Another global batch cannot resume exactly: a clear error, nothing written.
    let (fine, text) = reins(&strs(&args(&split, 2, 4)));
    assert!(!fine && text.contains("per_device_train_batch_size"), "{text}");
    let text = ok(&strs(&args(&split, 4, 4)));
    assert!(text.contains("resuming from"), "{text}");
    let (gap, _) = weight_gap(&whole.join("checkpoint-4"), &split.join("checkpoint-4"));
    assert!(gap <= 1e-5, "resumed on one rank: weights differ by {gap}");
    let last = |p: &Path| lines(&p.join("metrics.jsonl")).into_iter().rfind(|l| l.get("loss").is_some()).unwrap();
    let (a, b) = (last(&whole), last(&split));
    assert_eq!(a["num_tokens"], b["num_tokens"], "the token count carries over the resume");
}
