//! Shared by the TRL parity tests (`#[path]`-included): the fixtures of `fixtures/hf/trl`
//! (see its README and `record_steps.py`), the fixtures' optimizer, and one checker that
//! compares *every* key TRL logged in a row with ours.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use reins_model::{LoadOptions, Model};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::trainers::Metrics;
use serde_json::Value;

/// Keys of a TRL log row that are not metrics of the step: the Trainer's bookkeeping and
/// wall-clock time (which no reimplementation can or should reproduce).
pub const NOT_METRICS: &[&str] = &["epoch", "step", "step_time"];

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf")
}

pub fn json(name: &str) -> Value {
    let p = fixtures().join("trl").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("trl").join(name), &Device::Cpu).unwrap()
}

pub fn rows<T: TryFrom<i64>>(t: &Tensor) -> Vec<Vec<T>> {
    let v: Vec<Vec<i64>> = t.to_vec2().unwrap();
    v.into_iter().map(|r| r.into_iter().map(|x| T::try_from(x).ok().unwrap()).collect()).collect()
}

pub fn u32s(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

/// The fixtures' optimizer: AdamW(0.9, 0.999, 1e-8), lr 1e-3 constant, clip 1.0.
pub fn optimizer(model: &Model) -> Optimizer {
    let cfg = OptimConfig { learning_rate: 1e-3, lr_scheduler_type: SchedulerType::Constant, ..Default::default() };
    Optimizer::new(model.params(), &cfg, 3).unwrap()
}

pub fn load(name: &str, trainable: bool) -> Model {
    let opts = LoadOptions { trainable, ..Default::default() };
    Model::load(&fixtures().join("models").join(name), &Device::Cpu, &opts).unwrap()
}

/// The log rows of a run, checked to be the fixtures' three steps.
pub fn log(case: &str, run: &Value) -> Vec<Value> {
    let rows = run["log"].as_array().unwrap_or_else(|| panic!("{case}: no log")).clone();
    assert_eq!(rows.len(), 3, "{case}: the fixtures log three steps");
    rows
}

thread_local! {
    static FAILS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static COMPARED: RefCell<usize> = const { RefCell::new(0) };
}

/// Compares every metric of a TRL log row with ours (1e-4 relative; 1e-3 absolute below 1e-2
/// in magnitude) and records what is off; returns the worst relative error seen.
pub fn compare(case: &str, step: usize, ours: &Metrics, theirs: &Value) -> f64 {
    compare_with(case, step, ours, theirs, &[])
}

/// [`compare`], with an absolute tolerance for the keys in `absolute`: metrics that are a small
/// difference of two large float32 sums (e.g. two sequence log-probs of about −40), whose
/// rounding alone moves them by about 1e-5 whatever their size.
pub fn compare_with(case: &str, step: usize, ours: &Metrics, theirs: &Value, absolute: &[(&str, f64)]) -> f64 {
    let mut worst = 0.0f64;
    let row = theirs.as_object().unwrap_or_else(|| panic!("{case}: a log row is not an object"));
    for (k, v) in row.iter().filter(|(k, _)| !NOT_METRICS.contains(&k.as_str())) {
        let want = v.as_f64().unwrap_or_else(|| panic!("{case}: TRL's `{k}` is not a number"));
        let Some(&got) = ours.get(k) else {
            FAILS.with(|f| f.borrow_mut().push(format!("{case} step {step} `{k}`: we do not log it (TRL {want})")));
            continue;
        };
        COMPARED.with(|c| *c.borrow_mut() += 1);
        if std::env::var_os("TRL_PARITY_VERBOSE").is_some() {
            eprintln!("{case} step {step} `{k}`: ours {got} TRL {want}");
        }
        let err = (got - want).abs();
        let floor = absolute.iter().find(|(name, _)| name == k).map(|(_, a)| *a).unwrap_or(0.0);
        let ok = err <= floor || if want.abs() < 1e-2 { err <= 1e-3 } else { err / want.abs() <= 1e-4 };
        if !ok {
            FAILS.with(|f| f.borrow_mut().push(format!("{case} step {step} `{k}`: ours {got} vs TRL {want}")));
        }
        if want.abs() >= 1e-2 {
            worst = worst.max(err / want.abs());
        }
    }
    worst
}

/// Fails with every value that was off, and unless exactly `expected` values were compared
/// (so a run, a step or a key that goes missing cannot pass).
pub fn assert_no_failures(expected: usize) {
    FAILS.with(|f| {
        let f = f.borrow();
        assert!(f.is_empty(), "{} values off TRL:\n{}", f.len(), f.join("\n"));
    });
    let n = COMPARED.with(|c| *c.borrow());
    assert_eq!(n, expected, "compared {n} logged values with TRL's, expected {expected}");
}
