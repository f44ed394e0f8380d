//! Shared test helpers (included with `mod common;`).
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

pub fn data(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

pub fn f64s2(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(f64s).collect()
}

pub fn t1(v: &[f64]) -> Tensor {
    Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
}

pub fn t2(v: &[Vec<f64>]) -> Tensor {
    let (r, c) = (v.len(), v[0].len());
    let flat: Vec<f64> = v.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (r, c), &Device::Cpu).unwrap()
}

pub fn v1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

pub fn s(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().reshape(()).unwrap().to_scalar().unwrap()
}

/// `|a − b| ≤ rtol·|b|`, or `≤ atol` when `|b| < small`.
pub fn close(a: f64, b: f64, rtol: f64, atol: f64) -> bool {
    (a - b).abs() <= atol.max(rtol * b.abs())
}

#[track_caller]
pub fn assert_close(what: &str, a: f64, b: f64, rtol: f64, atol: f64) {
    assert!(close(a, b, rtol, atol), "{what}: got {a}, expected {b} (rtol {rtol}, atol {atol})");
}

#[track_caller]
pub fn assert_all_close(what: &str, a: &[f64], b: &[f64], rtol: f64, atol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(close(*x, *y, rtol, atol), "{what}[{i}]: got {x}, expected {y}");
    }
}
