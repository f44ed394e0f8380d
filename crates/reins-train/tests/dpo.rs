//! DPO losses against a literal numpy transcription of TRL 1.16 and against TRL's own logs.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use proptest::prelude::*;
use reins_train::losses::dpo::*;

fn cfg_from(v: &serde_json::Value) -> DpoConfig {
    let mut c: serde_json::Value = v.clone();
    // the generator writes every field explicitly; ld_alpha is not part of the loss
    c.as_object_mut().unwrap().remove("ld_alpha");
    serde_json::from_value(c).unwrap()
}

#[test]
fn every_case_matches_numpy_trl_f64_and_f32() {
    let d = data("dpo_losses.json");
    let inp = &d["inputs"];
    let cases = d["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for dt in [DType::F64, DType::F32] {
        let g = |k: &str| t1(&f64s(&inp[k])).to_dtype(dt).unwrap();
        let extras = DpoExtras {
            bco_delta: None,
            chosen_lengths: Some(g("chosen_lengths")),
            rejected_lengths: Some(g("rejected_lengths")),
            sft_nll: Some(Tensor::new(inp["sft_nll"].as_f64().unwrap(), &Device::Cpu).unwrap().to_dtype(dt).unwrap()),
            wpo_weights: Some(g("wpo_weights")),
            soft_labels: None,
        };
        // f32 inputs of magnitude ~50 carry ~4e-6 absolute error into the log-ratios.
        let (rtol, atol) = if dt == DType::F64 { (1e-10, 1e-12) } else { (2e-4, 1e-5) };
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let cfg = cfg_from(&c["config"]);
            let out = dpo_loss(
                &g("chosen_logps"),
                &g("rejected_logps"),
                &g("ref_chosen_logps"),
                &g("ref_rejected_logps"),
                &cfg,
                &extras,
            )
            .unwrap();
            let e = &c["expected"];
            assert_close(name, s(&out.loss), e["loss"].as_f64().unwrap(), rtol, atol);
            assert_all_close(name, &v1(&out.losses), &f64s(&e["losses"]), rtol, atol);
            assert_all_close(name, &v1(&out.chosen_rewards), &f64s(&e["chosen_rewards"]), rtol, atol);
            assert_all_close(name, &v1(&out.rejected_rewards), &f64s(&e["rejected_rewards"]), rtol, atol);
        }
    }
}

#[test]
fn ld_alpha_and_wpo_helpers_match_numpy() {
    let d = data("dpo_losses.json");
    let h = &d["helpers"];
    let mask = t2(&f64s2(&h["mask"]));
    let ptl = t2(&f64s2(&h["per_token_logps"]));
    for (a, k) in [(0.5, "ld_alpha_0_5"), (0.0, "ld_alpha_0"), (1.0, "ld_alpha_1")] {
        let got = ld_alpha_logps(&ptl, &mask, a).unwrap();
        assert_all_close(k, &v1(&got), &f64s(&h[k]), 1e-12, 1e-12);
    }
    let w = wpo_weights(&ptl, &t2(&f64s2(&h["log_sum_sq_probs"])), &mask).unwrap();
    assert_all_close("wpo", &v1(&w), &f64s(&h["wpo_weights"]), 1e-12, 1e-12);
}

fn fixture_cfg(run: &serde_json::Value) -> DpoConfig {
    let lt: DpoLossType = serde_json::from_value(run["loss_type"].clone()).unwrap();
    let mut cfg = DpoConfig::with_loss(lt);
    cfg.beta = run["beta"].as_f64().unwrap();
    cfg.label_smoothing = run.get("label_smoothing").and_then(|x| x.as_f64()).unwrap_or(0.0);
    cfg
}

/// Step 1 of every TRL run is logged before any update: the policy equals the reference, so
/// the logged loss is the loss at zero log-ratio, whatever the sequences.
#[test]
fn trl_step1_loss_is_loss_at_zero_logratio_for_every_run() {
    let f = fixture("trl/dpo.json");
    let runs = f["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 16);
    for (name, run) in runs {
        let cfg = fixture_cfg(run);
        let row = &run["log"][0];
        let lc = row["logps/chosen"].as_f64().unwrap();
        let lr = row["logps/rejected"].as_f64().unwrap();
        let c = t1(&[lc; 4]);
        let r = t1(&[lr; 4]);
        let extras = DpoExtras {
            chosen_lengths: Some(t1(&[9.0, 10.0, 6.0, 7.0])),
            rejected_lengths: Some(t1(&[5.0, 6.0, 3.0, 4.0])),
            ..Default::default()
        };
        let out = dpo_loss(&c, &r, &c, &r, &cfg, &extras).unwrap();
        let m = dpo_metrics(&out, &c, &r).unwrap();
        assert_close(name, m["loss"], row["loss"].as_f64().unwrap(), 1e-6, 1e-7);
        for k in ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"] {
            assert_eq!(m[k], row[k].as_f64().unwrap(), "{name} {k}");
        }
        assert_close(name, m["logps/chosen"], lc, 1e-12, 0.0);
    }
}

/// Rows 2–3: the logged mean rewards are `β (mean logps − mean ref logps)` with the reference
/// log-probs = row 1's (the frozen starting policy). The logs carry batch means only, so the
/// per-pair losses are not recoverable; for losses convex in the log-ratios Jensen gives
/// `loss ≥ ℓ(mean log-ratios)`, which we check too.
#[test]
fn trl_rows_2_3_rewards_and_jensen_bounds() {
    let f = fixture("trl/dpo.json");
    for (name, run) in f["runs"].as_object().unwrap() {
        let cfg = fixture_cfg(run);
        let log = run["log"].as_array().unwrap();
        let ref_c = log[0]["logps/chosen"].as_f64().unwrap();
        let ref_r = log[0]["logps/rejected"].as_f64().unwrap();
        for row in &log[1..] {
            let lc = row["logps/chosen"].as_f64().unwrap();
            let lr = row["logps/rejected"].as_f64().unwrap();
            let (c, r, rc, rr) = (t1(&[lc]), t1(&[lr]), t1(&[ref_c]), t1(&[ref_r]));
            let extras = DpoExtras {
                chosen_lengths: Some(t1(&[1.0])),
                rejected_lengths: Some(t1(&[1.0])),
                ..Default::default()
            };
            let out = dpo_loss(&c, &r, &rc, &rr, &cfg, &extras).unwrap();
            let m = dpo_metrics(&out, &c, &r).unwrap();
            for k in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
                let want = row[k].as_f64().unwrap();
                assert_close(&format!("{name} step {} {k}", row["step"]), m[k], want, 1e-4, 1e-3);
            }
            let convex = matches!(
                cfg.loss_type[0],
                DpoLossType::Sigmoid
                    | DpoLossType::Hinge
                    | DpoLossType::Robust
                    | DpoLossType::Aot
                    | DpoLossType::AotUnpaired
                    | DpoLossType::BcoPair
                    | DpoLossType::NcaPair
                    | DpoLossType::SppoHard
            );
            if convex {
                let logged = row["loss"].as_f64().unwrap();
                assert!(m["loss"] <= logged + 1e-4, "{name}: Jensen bound {} > logged {logged}", m["loss"]);
            }
        }
    }
}

#[test]
fn validation_errors_name_the_key() {
    let mut c = DpoConfig::with_loss(DpoLossType::ExoPair);
    assert!(c.validate().unwrap_err().to_string().contains("label_smoothing"));
    c.label_smoothing = 1e-3;
    c.validate().unwrap();
    let mut c = DpoConfig::with_loss(DpoLossType::BcoPair);
    c.f_divergence_type = FDivergenceType::JsDivergence;
    assert!(c.validate().unwrap_err().to_string().contains("f_divergence_type"));
    let c: DpoConfig = serde_json::from_str(r#"{"loss_type": "ipo", "beta": 0.2}"#).unwrap();
    assert_eq!(c.loss_type, vec![DpoLossType::Ipo]);
    assert!(serde_json::from_str::<DpoConfig>(r#"{"betta": 0.2}"#).is_err());
    let c =
        DpoConfig { loss_type: vec![DpoLossType::Sigmoid], loss_weights: Some(vec![1.0, 2.0]), ..Default::default() };
    assert!(c.validate().unwrap_err().to_string().contains("loss_weights"));
}

#[test]
fn gradients_flow_for_every_loss_type() {
    use DpoLossType::*;
    let all = [
        Sigmoid,
        Hinge,
        Ipo,
        NcaPair,
        Robust,
        BcoPair,
        SppoHard,
        Aot,
        AotUnpaired,
        ApoZero,
        ApoDown,
        Discopop,
        SigmoidNorm,
    ];
    for lt in all {
        let c = Var::new(&[-10.0f32, -12.0, -7.5], &Device::Cpu).unwrap();
        let r = Var::new(&[-11.0f32, -9.0, -8.0], &Device::Cpu).unwrap();
        let rc = Tensor::new(&[-10.5f32, -11.0, -7.0], &Device::Cpu).unwrap();
        let rr = Tensor::new(&[-10.0f32, -9.5, -8.5], &Device::Cpu).unwrap();
        let extras = DpoExtras {
            chosen_lengths: Some(Tensor::new(&[3f32, 4., 5.], &Device::Cpu).unwrap()),
            rejected_lengths: Some(Tensor::new(&[2f32, 4., 6.], &Device::Cpu).unwrap()),
            ..Default::default()
        };
        let out = dpo_loss(c.as_tensor(), r.as_tensor(), &rc, &rr, &DpoConfig::with_loss(lt), &extras).unwrap();
        let grads = out.loss.backward().unwrap();
        let gc = v1(grads.get(c.as_tensor()).expect("chosen grad"));
        let gr = v1(grads.get(r.as_tensor()).expect("rejected grad"));
        assert!(gc.iter().chain(&gr).all(|g| g.is_finite()), "{lt:?}");
        assert!(gc.iter().chain(&gr).any(|g| *g != 0.0), "{lt:?}: all-zero gradient");
    }
}

proptest! {
    #[test]
    fn sigmoid_at_zero_margin_is_ln2(x in -200.0f64..0.0, y in -200.0f64..0.0, beta in 0.01f64..5.0) {
        let (c, r) = (t1(&[x]), t1(&[y]));
        let mut cfg = DpoConfig::with_loss(DpoLossType::Sigmoid);
        cfg.beta = beta;
        let out = dpo_loss(&c, &r, &c, &r, &cfg, &DpoExtras::default()).unwrap();
        prop_assert!((s(&out.loss) - std::f64::consts::LN_2).abs() < 1e-12);
    }

    #[test]
    fn losses_are_finite(v in proptest::collection::vec(-300.0f32..0.0, 8), beta in 0.01f64..1.0) {
        use DpoLossType::*;
        let t = |i: usize| Tensor::new(&v[i * 2..i * 2 + 2], &Device::Cpu).unwrap();
        let extras = DpoExtras {
            chosen_lengths: Some(Tensor::new(&[3f32, 40.], &Device::Cpu).unwrap()),
            rejected_lengths: Some(Tensor::new(&[20f32, 1.], &Device::Cpu).unwrap()),
            ..Default::default()
        };
        for lt in [Sigmoid, Hinge, Ipo, NcaPair, Robust, BcoPair, SppoHard, Aot, AotUnpaired, ApoZero, ApoDown, SigmoidNorm] {
            let mut cfg = DpoConfig::with_loss(lt);
            cfg.beta = beta;
            let out = dpo_loss(&t(0), &t(1), &t(2), &t(3), &cfg, &extras).unwrap();
            prop_assert!(v1(&out.losses).iter().all(|x| x.is_finite()), "{:?}", lt);
        }
    }
}

/// BCO's running reward shift as explicit state (TRL ≤ 0.12 `bco_pair`, `RunningMoments`).
#[test]
fn bco_pair_with_running_shift() {
    let (c, r, rc, rr) = (t1(&[-10.0, -12.0]), t1(&[-11.0, -9.0]), t1(&[-10.5, -11.0]), t1(&[-10.0, -9.5]));
    let cfg = DpoConfig::with_loss(DpoLossType::BcoPair);
    // rewards β ρ: chosen [0.05, −0.1], rejected [−0.1, 0.05]; batch mean −0.025
    let state = reins_train::losses::RunningMoments::default().update(&[-0.025]);
    assert_close("first mean", state.mean, -0.025, 1e-12, 0.0);
    let state2 = state.update(&[0.075]);
    assert_close("second mean", state2.mean, 0.025, 1e-12, 0.0);
    assert_close("second var", state2.var, 0.0025, 1e-9, 0.0);
    let extras = DpoExtras { bco_delta: Some(state.mean), ..Default::default() };
    let out = dpo_loss(&c, &r, &rc, &rr, &cfg, &extras).unwrap();
    let sp = |x: f64| (1.0 + (-x).exp()).ln(); // −log σ(x)
    let d = -0.025;
    let want = [sp(0.05 - d) + sp(-(-0.1 - d)), sp(-0.1 - d) + sp(-(0.05 - d))];
    assert_all_close("bco", &v1(&out.losses), &want, 1e-9, 0.0);
}

#[test]
fn token_logps_and_log_sum_sq_probs_by_hand() {
    use reins_train::losses::ops::token_logps;
    let logits = Tensor::new(&[[[1.0f32, 2.0, 0.5], [0.0, 0.0, 3.0]]], &Device::Cpu).unwrap(); // [1, 2, 3]
    let labels = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
    let got = v1(&token_logps(&logits, &labels).unwrap());
    let lse = |v: &[f64]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
    let want = [2.0 - lse(&[1.0, 2.0, 0.5]), 3.0 - lse(&[0.0, 0.0, 3.0])];
    assert_all_close("token_logps", &got, &want, 1e-6, 0.0);
    let lssp = v1(&log_sum_sq_probs(&logits).unwrap());
    let p: Vec<f64> = [1.0f64, 2.0, 0.5].iter().map(|x| (x - lse(&[1.0, 2.0, 0.5])).exp()).collect();
    assert_close("lssp", lssp[0], p.iter().map(|x| x * x).sum::<f64>().ln(), 1e-6, 0.0);
}

/// Soft labels replace the hard label: `p ℓ(Δ) + (1 − p) ℓ(−Δ)`. At p = 1/2 the sigmoid,
/// robust and exo_pair losses are symmetric in chosen and rejected (sigmoid and robust both
/// `½[softplus(−βΔ) + softplus(βΔ)]`); at p = 1 they are TRL's; types without a soft form
/// reject labels below 1.
#[test]
fn soft_labels_one_half_give_symmetric_losses() {
    use DpoLossType::*;
    let (c, r, rc, rr) = (t1(&[-10.0, -12.0]), t1(&[-11.0, -9.0]), t1(&[-10.5, -11.0]), t1(&[-10.0, -9.5]));
    let half = DpoExtras { soft_labels: Some(t1(&[0.5, 0.5])), ..Default::default() };
    let ones = DpoExtras { soft_labels: Some(t1(&[1.0, 1.0])), ..Default::default() };
    let beta = 0.5;
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    // Δ = (c − rc) − (r − rr) per pair: 0.5 − (−1.0) = 1.5 and −1.0 − 0.5 = −1.5.
    let want = [1.5f64, -1.5].iter().map(|d| 0.5 * (softplus(-beta * d) + softplus(beta * d))).sum::<f64>() / 2.0;
    for (lt, ls) in [(Sigmoid, 0.0), (Robust, 0.2), (ExoPair, 0.1)] {
        let cfg = DpoConfig { beta, label_smoothing: ls, ..DpoConfig::with_loss(lt) };
        let fwd = s(&dpo_loss(&c, &r, &rc, &rr, &cfg, &half).unwrap().loss);
        let back = s(&dpo_loss(&r, &c, &rr, &rc, &cfg, &half).unwrap().loss);
        assert_close(&format!("{lt:?} swapped"), back, fwd, 1e-12, 1e-15);
        if lt != ExoPair {
            assert_close(&format!("{lt:?} p = 1/2"), fwd, want, 1e-12, 0.0);
        }
        let hard = s(&dpo_loss(&c, &r, &rc, &rr, &cfg, &DpoExtras::default()).unwrap().loss);
        let p1 = s(&dpo_loss(&c, &r, &rc, &rr, &cfg, &ones).unwrap().loss);
        assert_close(&format!("{lt:?} p = 1"), p1, hard, 1e-12, 1e-15);
    }
    let soft = DpoExtras { soft_labels: Some(t1(&[0.7, 1.0])), ..Default::default() };
    let e = dpo_loss(&c, &r, &rc, &rr, &DpoConfig::with_loss(Ipo), &soft).unwrap_err().to_string();
    assert!(e.contains("Ipo") && e.contains("strength"), "{e}");
    // Hard labels (all 1) are fine for any type.
    let lens = DpoExtras {
        chosen_lengths: Some(t1(&[3.0, 4.0])),
        rejected_lengths: Some(t1(&[2.0, 5.0])),
        soft_labels: Some(t1(&[1.0, 1.0])),
        ..Default::default()
    };
    assert!(dpo_loss(&c, &r, &rc, &rr, &DpoConfig::with_loss(Ipo), &lens).is_ok());
    let bad = DpoExtras { soft_labels: Some(t1(&[-0.1, 1.0])), ..Default::default() };
    let e = dpo_loss(&c, &r, &rc, &rr, &DpoConfig::default(), &bad).unwrap_err().to_string();
    assert!(e.contains("outside [0, 1]"), "{e}");
}
