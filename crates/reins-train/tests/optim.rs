//! AdamW, clipping and schedules against torch semantics (numpy float32 transcription).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use reins_train::optim::*;

fn flat(v: &serde_json::Value) -> Vec<f32> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(flat).collect(),
        x => vec![x.as_f64().unwrap() as f32],
    }
}

fn shape(name: &str) -> Vec<usize> {
    if name == "w" {
        vec![3, 4]
    } else {
        vec![5]
    }
}

fn run_trajectory(fused: bool) -> (Vec<Var>, AdamW) {
    let d = data("adamw.json");
    let c = &d["config"];
    let names = ["w", "b"];
    let vars: Vec<Var> = names
        .iter()
        .map(|n| Var::from_tensor(&Tensor::from_vec(flat(&d["init"][n]), shape(n), &Device::Cpu).unwrap()).unwrap())
        .collect();
    let cfg = AdamWConfig {
        lr: 0.0,
        beta1: c["beta1"].as_f64().unwrap(),
        beta2: c["beta2"].as_f64().unwrap(),
        eps: c["eps"].as_f64().unwrap(),
        weight_decay: c["weight_decay"].as_f64().unwrap(),
    };
    let named = names.iter().map(|n| n.to_string()).zip(vars.iter().cloned()).collect();
    let mut opt = AdamW::with_fused(named, cfg, fused).unwrap();
    for (i, st) in d["steps"].as_array().unwrap().iter().enumerate() {
        // loss = Σ p ⊙ G has gradient exactly G.
        let mut loss = Tensor::new(0f32, &Device::Cpu).unwrap();
        for (n, v) in names.iter().zip(&vars) {
            let g = Tensor::from_vec(flat(&st["grads"][n]), shape(n), &Device::Cpu).unwrap();
            loss = (loss + (v.as_tensor() * g).unwrap().sum_all().unwrap()).unwrap();
        }
        let grads = loss.backward().unwrap();
        let (norm, coef) = clip_grad_norm(&vars, &grads, c["max_norm"].as_f64().unwrap()).unwrap();
        assert_close(&format!("norm {i}"), norm, st["total_norm"].as_f64().unwrap(), 1e-7, 0.0);
        assert_close(&format!("coef {i}"), coef as f64, st["clip_coef"].as_f64().unwrap(), 1e-7, 0.0);
        opt.step(&grads, st["lr"].as_f64().unwrap(), coef).unwrap();
        for (n, v) in names.iter().zip(&vars) {
            let got: Vec<f64> = v1(v.as_tensor());
            let want: Vec<f64> = flat(&st["params"][n]).iter().map(|x| *x as f64).collect();
            // a few f32 ulps: torch's vectorised kernels may fuse differently
            assert_all_close(&format!("step {i} {n} fused={fused}"), &got, &want, 1e-6, 1e-7);
        }
    }
    (vars, opt)
}

#[test]
fn fused_adamw_matches_torch_trajectory_with_clipping_and_decay() {
    let (_, opt) = run_trajectory(true);
    assert!(opt.is_fused());
    assert_eq!(opt.step_count(), 5);
}

#[test]
fn composed_fallback_matches_torch_trajectory() {
    run_trajectory(false);
}

#[test]
fn fused_and_composed_agree_on_a_large_tensor() {
    // > one rayon chunk, so the parallel path runs.
    let n = 100_003;
    let init: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
    let g: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos() * 0.01).collect();
    let mk = || Var::from_tensor(&Tensor::from_slice(&init, n, &Device::Cpu).unwrap()).unwrap();
    let (a, b) = (mk(), mk());
    let cfg = AdamWConfig { weight_decay: 0.05, ..Default::default() };
    let mut oa = AdamW::with_fused(vec![("p".into(), a.clone())], cfg, true).unwrap();
    let mut ob = AdamW::with_fused(vec![("p".into(), b.clone())], cfg, false).unwrap();
    let gt = Tensor::from_slice(&g, n, &Device::Cpu).unwrap();
    for step in 0..3 {
        let ga = (a.as_tensor() * &gt).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b.as_tensor() * &gt).unwrap().sum_all().unwrap().backward().unwrap();
        oa.step(&ga, 1e-3, 0.5).unwrap();
        ob.step(&gb, 1e-3, 0.5).unwrap();
        let (va, vb) = (v1(a.as_tensor()), v1(b.as_tensor()));
        let max = va.iter().zip(&vb).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(max <= 1e-6, "step {step}: max diff {max}");
    }
}

#[test]
fn state_save_load_resumes_exactly() {
    let dir = std::env::temp_dir().join(format!("reins-adamw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("opt.safetensors");
    let init = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &Device::Cpu).unwrap();
    let gt = Tensor::new(&[[0.3f32, -0.2], [0.1, 0.7]], &Device::Cpu).unwrap();
    let step = |v: &Var, o: &mut AdamW| {
        let g = (v.as_tensor() * v.as_tensor()).unwrap().mul(&gt).unwrap().sum_all().unwrap().backward().unwrap();
        o.step(&g, 1e-2, 1.0).unwrap();
    };
    let a = Var::from_tensor(&init).unwrap();
    let mut oa = AdamW::new(vec![("layer.weight".into(), a.clone())], AdamWConfig::default()).unwrap();
    for _ in 0..3 {
        step(&a, &mut oa);
    }
    oa.save_state(&path).unwrap();
    // resume into a fresh optimizer over a copy of the parameters
    let b = Var::from_tensor(&a.as_tensor().copy().unwrap()).unwrap();
    let mut ob = AdamW::new(vec![("layer.weight".into(), b.clone())], AdamWConfig::default()).unwrap();
    ob.load_state(&path).unwrap();
    assert_eq!(ob.step_count(), 3);
    for _ in 0..2 {
        step(&a, &mut oa);
        step(&b, &mut ob);
    }
    assert_eq!(v1(a.as_tensor()), v1(b.as_tensor()));
    // a missing name is an error that names it
    let c = Var::from_tensor(&init).unwrap();
    let mut oc = AdamW::new(vec![("other".into(), c)], AdamWConfig::default()).unwrap();
    assert!(oc.load_state(&path).unwrap_err().to_string().contains("other.exp_avg"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn params_without_grad_are_untouched() {
    let a = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let b = Var::new(&[3f32, 4.0], &Device::Cpu).unwrap();
    let mut o = AdamW::new(vec![("a".into(), a.clone()), ("b".into(), b.clone())], AdamWConfig::default()).unwrap();
    let g = a.as_tensor().sum_all().unwrap().backward().unwrap();
    o.step(&g, 0.1, 1.0).unwrap();
    assert_eq!(v1(b.as_tensor()), vec![3.0, 4.0]);
    assert_ne!(v1(a.as_tensor()), vec![1.0, 2.0]);
    let _ = DType::F32;
}

#[test]
fn clip_coef_is_torchs() {
    assert_eq!(clip_coef(0.5, 1.0), 1.0);
    assert_close("coef", clip_coef(4.0, 1.0) as f64, (1.0f32 / (4.0f32 + 1e-6)) as f64, 0.0, 0.0);
}

/// Values of transformers' `get_*_schedule_with_warmup` lambdas (hand-derived from the HF
/// formulas; warmup 2, total 10).
#[test]
fn schedules_match_hf() {
    let s = |k| LrSchedule::new(k, 1.0, 2, 10);
    let lin: Vec<f64> = (0..11).map(|i| s(SchedulerType::Linear).lr(i)).collect();
    let want = [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0];
    assert_all_close("linear", &lin, &want, 1e-12, 1e-12);
    let cos: Vec<f64> = (0..11).map(|i| s(SchedulerType::Cosine).lr(i)).collect();
    let want: Vec<f64> =
        (0..11)
            .map(|i| {
                if i < 2 {
                    i as f64 / 2.0
                } else {
                    0.5 * (1.0 + (std::f64::consts::PI * (i as f64 - 2.0) / 8.0).cos())
                }
            })
            .collect();
    assert_all_close("cosine", &cos, &want, 1e-12, 1e-12);
    assert_close("cos mid", cos[6], 0.5, 1e-12, 1e-12);
    assert_eq!(s(SchedulerType::ConstantWithWarmup).lr(1), 0.5);
    assert_eq!(s(SchedulerType::ConstantWithWarmup).lr(7), 1.0);
    assert_eq!(s(SchedulerType::Constant).lr(0), 1.0);
    assert_eq!(warmup_steps(0, 0.1, 95), 10);
    assert_eq!(warmup_steps(3, 0.1, 95), 3);
    // no warmup: first step at full lr (TRL fixtures: lr 1e-3 constant at every row)
    assert_eq!(LrSchedule::new(SchedulerType::Linear, 1e-3, 0, 3).lr(0), 1e-3);
}

/// torch keeps a step count per parameter: one that missed a gradient gets the bias
/// correction of its own first step later.
#[test]
fn per_parameter_step_counts() {
    let a = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    let b = Var::new(&[3f32, 4.0], &Device::Cpu).unwrap();
    let mut o = AdamW::new(vec![("a".into(), a.clone()), ("b".into(), b.clone())], AdamWConfig::default()).unwrap();
    let g1 = a.as_tensor().sum_all().unwrap().backward().unwrap();
    o.step(&g1, 0.1, 1.0).unwrap();
    let loss = (a.as_tensor().sum_all().unwrap() + b.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
    o.step(&loss.backward().unwrap(), 0.1, 1.0).unwrap();
    let fresh = Var::new(&[3f32, 4.0], &Device::Cpu).unwrap();
    let mut of = AdamW::new(vec![("b".into(), fresh.clone())], AdamWConfig::default()).unwrap();
    of.step(&fresh.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap(), 0.1, 1.0).unwrap();
    assert_eq!(v1(b.as_tensor()), v1(fresh.as_tensor()));
}
