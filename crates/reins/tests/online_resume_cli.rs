//! Exact resume through the CLI, for every online command, on the tiny Llama fixture:
//!
//! - an interrupted run (`max_steps = 4`, `save_steps = 2`, stopped after `checkpoint-2`) rerun
//!   with the same settings logs exactly what the uninterrupted run logged, with a decaying
//!   learning rate that is still above 0 at the last step;
//! - training longer (2 steps, then again with `max_steps = 4`) at a constant learning rate
//!   continues the 4-step trajectory: data order and sampler depend on the seed and the step,
//!   not on `max_steps`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `reins <method> --config <config>` with `--set` overrides; the run must succeed.
fn reins(method: &str, config: &str, out: &Path, sets: &[String]) -> Result<()> {
    let mut args = vec![method.to_string(), "--config".into(), config.into()];
    for s in std::iter::once(format!("output_dir={}", out.display())).chain(sets.iter().cloned()) {
        args.push("--set".into());
        args.push(s);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_reins")).args(&args).current_dir(root()).output()?;
    if !o.status.success() {
        return Err(format!(
            "reins {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(())
}

fn lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Ok(text.lines().map(serde_json::from_str).collect::<std::result::Result<_, _>>()?)
}

/// What a run stopped during step 3 leaves: `checkpoint-2` and the logs of steps 1–2.
fn interrupt_after_step_2(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.join("checkpoint-2"))?;
    std::fs::copy(from.join("config.toml"), to.join("config.toml"))?;
    for e in std::fs::read_dir(from.join("checkpoint-2"))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join("checkpoint-2").join(e.file_name()))?;
        } else {
            return Err(format!("unexpected folder {} in a checkpoint", e.path().display()).into());
        }
    }
    for f in ["metrics.jsonl", "samples.jsonl"] {
        // The lines as written (a parse and print could change a float's last digit).
        let text = std::fs::read_to_string(from.join(f)).unwrap_or_default();
        let mut kept = Vec::new();
        for line in text.lines() {
            if serde_json::from_str::<Value>(line)?["step"].as_u64() <= Some(2) {
                kept.push(line.to_string());
            }
        }
        if !kept.is_empty() {
            std::fs::write(to.join(f), kept.join("\n") + "\n")?;
        }
    }
    Ok(())
}

fn settings(extra: &[&str], more: &[&str]) -> Vec<String> {
    ["logging_steps=1", "log_completions_steps=1"].iter().chain(extra).chain(more).map(|s| s.to_string()).collect()
}

/// Item (a): 4 steps straight vs. the same run stopped after `checkpoint-2` and rerun.
fn interrupted_run_resumes_exactly(method: &str, config: &str, extra: &[&str]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (dir.path().join("straight"), dir.path().join("interrupted"));
    let s = settings(extra, &["max_steps=4", "save_steps=2", "lr_scheduler_type=\"linear\""]);
    reins(method, config, &a, &s)?;
    interrupt_after_step_2(&a, &b)?;
    reins(method, config, &b, &s)?;
    let (la, lb) = (lines(&a.join("metrics.jsonl"))?, lines(&b.join("metrics.jsonl"))?);
    assert_eq!(la.len(), 4, "{method}: {la:?}");
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x, y, "{method}: step {} differs after the resume", x["step"]);
    }
    assert_eq!(la.len(), lb.len(), "{method}: {lb:?}");
    let samples = |p: &Path| std::fs::read_to_string(p.join("samples.jsonl")).unwrap_or_default();
    assert_eq!(samples(&a), samples(&b), "{method}: the resumed run sampled other completions");
    // A linear schedule over the run reaches 0 only after the last step (iterative DPO logs a
    // rate only for rounds that found pairs; each round has its own schedule).
    if let Some(last_lr) = la[3]["learning_rate"].as_f64() {
        assert!(last_lr > 0.0, "{method}: learning rate {last_lr} at step 4 of 4; the schedule is miscounted: {la:?}");
    }
    Ok(())
}

/// Item (b): 2 steps then `max_steps = 4` vs. 4 steps straight, at a constant learning rate.
fn training_longer_continues_the_trajectory(method: &str, config: &str, extra: &[&str]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (dir.path().join("straight"), dir.path().join("longer"));
    let constant = ["save_steps=2", "lr_scheduler_type=\"constant\""];
    reins(method, config, &a, &settings(extra, &[&constant[..], &["max_steps=4"]].concat()))?;
    reins(method, config, &b, &settings(extra, &[&constant[..], &["max_steps=2"]].concat()))?;
    reins(method, config, &b, &settings(extra, &[&constant[..], &["max_steps=4"]].concat()))?;
    let (la, lb) = (lines(&a.join("metrics.jsonl"))?, lines(&b.join("metrics.jsonl"))?);
    assert_eq!(la.len(), 4, "{method}: {la:?}");
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x, y, "{method}: step {} differs when training longer", x["step"]);
    }
    assert_eq!(la.len(), lb.len(), "{method}: {lb:?}");
    Ok(())
}

// GRPO and RLOO with two optimisation passes per generation batch: several optimizer steps
// per run step, as PPO's epochs.
const GRPO: &[&str] = &["num_generations=2", "max_completion_length=6", "num_iterations=2"];
const PPO: &[&str] = &["response_length=6", "num_ppo_epochs=2"];
const REMAX: &[&str] = &["max_completion_length=6"];
const DPO: &[&str] = &["max_new_tokens=6"];
const ITERATIVE: &[&str] = &["max_new_tokens=6", "num_generations=4"];

#[test]
fn grpo_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("grpo", "examples/grpo.toml", GRPO)
}

#[test]
fn rloo_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("rloo", "examples/grpo.toml", GRPO)
}

#[test]
fn ppo_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("ppo", "examples/ppo.toml", PPO)
}

#[test]
fn remax_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("remax", "examples/remax.toml", REMAX)
}

#[test]
fn online_dpo_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("online-dpo", "examples/online_dpo.toml", DPO)
}

#[test]
fn iterative_dpo_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("iterative-dpo", "examples/iterative_dpo.toml", ITERATIVE)
}

#[test]
fn inpo_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("inpo", "examples/inpo.toml", ITERATIVE)
}

#[test]
fn osp_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("osp", "examples/osp.toml", ITERATIVE)
}

#[test]
fn nash_md_resumes_exactly_after_an_interruption() -> Result<()> {
    interrupted_run_resumes_exactly("nash-md", "examples/nash_md.toml", DPO)
}

#[test]
fn grpo_trains_longer_on_the_same_trajectory() -> Result<()> {
    training_longer_continues_the_trajectory("grpo", "examples/grpo.toml", GRPO)
}

#[test]
fn rloo_trains_longer_on_the_same_trajectory() -> Result<()> {
    training_longer_continues_the_trajectory("rloo", "examples/grpo.toml", GRPO)
}

#[test]
fn ppo_trains_longer_on_the_same_trajectory() -> Result<()> {
    training_longer_continues_the_trajectory("ppo", "examples/ppo.toml", PPO)
}

#[test]
fn remax_trains_longer_on_the_same_trajectory() -> Result<()> {
    training_longer_continues_the_trajectory("remax", "examples/remax.toml", REMAX)
}

#[test]
fn online_dpo_trains_longer_on_the_same_trajectory() -> Result<()> {
    training_longer_continues_the_trajectory("online-dpo", "examples/online_dpo.toml", DPO)
}

#[test]
fn iterative_dpo_trains_longer_on_the_same_trajectory() -> Result<()> {
    training_longer_continues_the_trajectory("iterative-dpo", "examples/iterative_dpo.toml", ITERATIVE)
}
