//! KTO, ORPO, CPO, SimPO, LiPO and reward losses against numpy transcriptions of TRL 1.16.

mod common;

use candle_core::{Device, Tensor, Var};
use common::*;
use proptest::prelude::*;
use reins_train::losses::*;

#[test]
fn kto_matches_trl() {
    let d = data("prefs.json");
    let k = &d["kto"];
    let g = |n: &str| t1(&f64s(&k[n]));
    let kl = kto_kl_estimate(&g("kl_logps"), &g("ref_kl_logps")).unwrap();
    assert_close("kl", s(&kl), k["kl"].as_f64().unwrap(), 1e-12, 1e-12);
    for (name, c) in k["cases"].as_object().unwrap() {
        let cfg: KtoConfig = serde_json::from_value(serde_json::json!({
            "beta": c["beta"], "desirable_weight": c["desirable_weight"],
            "undesirable_weight": c["undesirable_weight"], "loss_type": c["loss_type"]}))
        .unwrap();
        let (ch, rch, rj, rrj) = (g("chosen"), g("ref_chosen"), g("rejected"), g("ref_rejected"));
        let out = kto_loss(Some((&ch, &rch)), Some((&rj, &rrj)), &kl, &cfg).unwrap();
        assert_close(name, s(&out.loss), c["loss"].as_f64().unwrap(), 1e-12, 1e-12);
    }
    // one side only is fine; none is an error
    let (ch, rch) = (g("chosen"), g("ref_chosen"));
    assert!(kto_loss(Some((&ch, &rch)), None, &kl, &KtoConfig::default()).is_ok());
    assert!(kto_loss(None, None, &kl, &KtoConfig::default()).is_err());
}

#[test]
fn orpo_matches_trl() {
    let d = data("prefs.json");
    let o = &d["orpo"];
    let x = t1(&f64s(&o["log1mexp_x"]));
    assert_all_close("log1mexp", &v1(&log1mexp(&x).unwrap()), &f64s(&o["log1mexp"]), 1e-10, 1e-12);
    let nll = Tensor::new(o["nll"].as_f64().unwrap(), &Device::Cpu).unwrap();
    let out =
        orpo_loss(&t1(&f64s(&o["chosen"])), &t1(&f64s(&o["rejected"])), &nll, o["beta"].as_f64().unwrap()).unwrap();
    assert_close("loss", s(&out.loss), o["loss"].as_f64().unwrap(), 1e-10, 1e-12);
    assert_close("lor", s(&out.log_odds_ratio), o["log_odds_ratio"].as_f64().unwrap(), 1e-10, 1e-12);
    assert_close("loc", s(&out.log_odds_chosen), o["log_odds_chosen"].as_f64().unwrap(), 1e-10, 1e-12);
    // f32 gradients stay finite even for log-probs at ~0
    let c = Var::new(&[-1e-7f32, -0.3, -2.0], &Device::Cpu).unwrap();
    let r = Tensor::new(&[-0.5f32, -1e-6, -3.0], &Device::Cpu).unwrap();
    let nll = Tensor::new(1f32, &Device::Cpu).unwrap();
    let g = orpo_loss(c.as_tensor(), &r, &nll, 0.1).unwrap().loss.backward().unwrap();
    assert!(v1(g.get(c.as_tensor()).unwrap()).iter().all(|x| x.is_finite()));
}

#[test]
fn cpo_and_simpo_match_trl() {
    let d = data("prefs.json");
    let c = &d["cpo"];
    let nll = Tensor::new(c["nll"].as_f64().unwrap(), &Device::Cpu).unwrap();
    let cases = c["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 12);
    for (name, case) in cases {
        let cfg: CpoConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let (pc, pr) = (t1(&f64s(&case["chosen"])), t1(&f64s(&case["rejected"])));
        let out = cpo_loss(&pc, &pr, Some(&nll), &cfg).unwrap();
        assert_close(name, s(&out.loss), case["loss"].as_f64().unwrap(), 1e-10, 1e-12);
        assert_all_close(name, &v1(&out.losses), &f64s(&case["losses"]), 1e-10, 1e-12);
        assert_all_close(name, &v1(&out.chosen_rewards), &f64s(&case["chosen_rewards"]), 1e-10, 1e-12);
        if cfg.loss_type == CpoLossType::Simpo && cfg.alpha == 0.0 {
            let so = simpo_loss(&pc, &pr, cfg.beta, cfg.simpo_gamma, cfg.label_smoothing).unwrap();
            assert_all_close(name, &v1(&so.losses), &f64s(&case["losses"]), 1e-10, 1e-12);
        }
    }
}

#[test]
fn bradley_terry_matches_trl() {
    let d = data("prefs.json");
    let r = &d["reward"];
    let (c, j, m) = (t1(&f64s(&r["chosen"])), t1(&f64s(&r["rejected"])), t1(&f64s(&r["margin"])));
    let cs = &r["cases"];
    let base = RewardLossConfig::default();
    assert_close(
        "plain",
        s(&bradley_terry_loss(&c, &j, None, None, &base).unwrap()),
        cs["plain"].as_f64().unwrap(),
        1e-12,
        0.0,
    );
    assert_close(
        "margin",
        s(&bradley_terry_loss(&c, &j, Some(&m), None, &base).unwrap()),
        cs["margin"].as_f64().unwrap(),
        1e-12,
        0.0,
    );
    let cfg = RewardLossConfig { center_rewards_coefficient: Some(0.01), ..base };
    let got = s(&bradley_terry_loss(&c, &j, Some(&m), None, &cfg).unwrap());
    assert_close("center", got, cs["margin_center_0.01"].as_f64().unwrap(), 1e-12, 0.0);
    // soft label 1 and smoothing 0 are TRL's loss; smoothing ε equals soft label 1 − ε
    let ones = c.ones_like().unwrap();
    let soft = s(&bradley_terry_loss(&c, &j, None, Some(&ones), &base).unwrap());
    assert_close("soft=1", soft, cs["plain"].as_f64().unwrap(), 1e-12, 0.0);
    let sm = RewardLossConfig { label_smoothing: 0.1, ..base };
    let a = s(&bradley_terry_loss(&c, &j, None, None, &sm).unwrap());
    let b = s(&bradley_terry_loss(&c, &j, None, Some(&(ones * 0.9).unwrap()), &base).unwrap());
    assert_close("smoothing", a, b, 1e-12, 1e-15);
}

/// TRL RewardTrainer fixture: row-level metrics are consistent (min ≤ mean ≤ max) and the
/// logged loss obeys Jensen's bound `loss ≥ −log σ(margin)`; step 1's accuracy 0.25 of 4 pairs.
#[test]
fn reward_metrics_keys_and_trl_fixture_consistency() {
    let f = fixture("trl/reward.json");
    for row in f["log"].as_array().unwrap() {
        let margin = row["margin"].as_f64().unwrap();
        let jensen = (1.0 + (-margin).exp()).ln();
        assert!(row["loss"].as_f64().unwrap() >= jensen - 1e-6);
        assert!(row["min_reward"].as_f64().unwrap() <= row["mean_reward"].as_f64().unwrap());
        assert!(row["mean_reward"].as_f64().unwrap() <= row["max_reward"].as_f64().unwrap());
    }
    let m = reward_metrics(&t1(&[1.0, 0.5, -1.0, 2.0]), &t1(&[0.0, 0.5, 1.0, 1.0])).unwrap();
    assert_eq!(m["accuracy"], 0.5); // the tie counts as wrong
    assert_close("margin", m["margin"], 0.0, 0.0, 1e-15); // (1 + 0 − 2 + 1)/4
    assert_eq!(m["min_reward"], -1.0);
    assert_eq!(m["max_reward"], 2.0);
    assert_close("mean", m["mean_reward"], 5.0 / 8.0, 1e-12, 0.0);
    for k in ["accuracy", "margin", "min_reward", "mean_reward", "max_reward"] {
        assert!(f["log"][0].get(k).is_some(), "TRL logs {k}");
    }
}

#[test]
fn plackett_luce_reduces_to_bradley_terry_and_ignores_padding() {
    let c = [0.3, -1.2, 2.0];
    let r = [0.1, 0.4, -0.5];
    let bt = s(&bradley_terry_loss(&t1(&c), &t1(&r), None, None, &RewardLossConfig::default()).unwrap());
    let scores = t2(&[vec![0.3, 0.1], vec![-1.2, 0.4], vec![2.0, -0.5]]);
    let grades = t2(&vec![vec![1.0, 0.0]; 3]);
    let pl = s(&plackett_luce_loss(&scores, &grades, &t2(&vec![vec![1.0, 1.0]; 3])).unwrap());
    assert_close("PL k=2", pl, bt, 1e-12, 1e-15);
    // padded K = 4 with garbage scores and grades in padding == unpadded K = 2
    let padded = t2(&[vec![0.3, 99.0, 0.1, -7.0], vec![-1.2, 0.4, 5.0, 5.0], vec![2.0, -0.5, 0.0, 1.0]]);
    let pgrades = t2(&[vec![1.0, 7.0, 0.0, 1.0], vec![1.0, 0.0, 1.0, 9.0], vec![1.0, 0.0, 0.0, 0.0]]);
    let mask = t2(&[vec![1.0, 0.0, 1.0, 0.0], vec![1.0, 1.0, 0.0, 0.0], vec![1.0, 1.0, 0.0, 0.0]]);
    assert_close("PL padded", s(&plackett_luce_loss(&padded, &pgrades, &mask).unwrap()), bt, 1e-12, 1e-15);
    // K = 3 by hand: −[s1 − lse(s1,s2,s3)] − [s2 − lse(s2,s3)]
    let (a, b, cc) = (1.0f64, 0.2f64, -0.4f64);
    let lse3 = (a.exp() + b.exp() + cc.exp()).ln();
    let lse2 = (b.exp() + cc.exp()).ln();
    let want = -(a - lse3) - (b - lse2);
    let got =
        s(&plackett_luce_loss(&t2(&[vec![a, b, cc]]), &t2(&[vec![2.0, 1.0, 0.0]]), &t2(&[vec![1.0; 3]])).unwrap());
    assert_close("PL k=3", got, want, 1e-12, 0.0);
}

/// Efron's tie groups by hand (a tie group G with d members and worse items W contributes
/// `Σ_G s − Σ_{r<d} log(Σ_W e^s + (1 − r/d) Σ_G e^s)`), and no dependence on item order.
#[test]
fn plackett_luce_ties_are_efron_groups() {
    let (a, b, c) = (1.0f64, 0.2f64, -0.4f64);
    let (ea, eb, ec) = (a.exp(), b.exp(), c.exp());
    let pl = |scores: [f64; 3], grades: [f64; 3]| {
        s(&plackett_luce_loss(&t2(&[scores.to_vec()]), &t2(&[grades.to_vec()]), &t2(&[vec![1.0; 3]])).unwrap())
    };
    // a and b tied on top, then c (whose own term is 0).
    let top = -(a + b - (ea + eb + ec).ln() - (0.5 * (ea + eb) + ec).ln());
    assert_close("tie on top", pl([a, b, c], [1.0, 1.0, 0.0]), top, 1e-12, 0.0);
    // a, then b and c tied at the bottom.
    let bottom = -(a - (ea + eb + ec).ln() + b + c - (eb + ec).ln() - (0.5 * (eb + ec)).ln());
    assert_close("tie at the bottom", pl([a, b, c], [1.0, 0.0, 0.0]), bottom, 1e-12, 0.0);
    // Any order of the items (with their grades) gives the same loss.
    for (scores, grades) in [([b, a, c], [1.0, 1.0, 0.0]), ([c, b, a], [0.0, 1.0, 1.0]), ([b, c, a], [1.0, 1.0, 2.0])] {
        let sorted = {
            let mut v: Vec<(f64, f64)> = scores.iter().copied().zip(grades).collect();
            v.sort_by(|x, y| y.1.total_cmp(&x.1).then(y.0.total_cmp(&x.0)));
            ([v[0].0, v[1].0, v[2].0], [v[0].1, v[1].1, v[2].1])
        };
        assert_close("order", pl(scores, grades), pl(sorted.0, sorted.1), 1e-12, 1e-15);
    }
    // The gradient of a tied pair is symmetric: equal scores get equal gradients.
    let x = Var::new(&[[0.5f64, 0.5, -1.0]], &Device::Cpu).unwrap();
    let g = plackett_luce_loss(x.as_tensor(), &t2(&[vec![1.0, 1.0, 0.0]]), &t2(&[vec![1.0; 3]])).unwrap();
    let g = v1(g.backward().unwrap().get(x.as_tensor()).unwrap());
    assert_close("symmetric gradient", g[0], g[1], 1e-12, 1e-15);
}

/// A soft label p = 1/2 makes the Bradley–Terry loss symmetric in chosen and rejected:
/// `½[softplus(−d) + softplus(d)]`.
#[test]
fn bradley_terry_soft_label_one_half_is_symmetric() {
    let (c, r) = (t1(&[0.7, -1.5, 3.0]), t1(&[0.2, 0.5, -1.0]));
    let half = t1(&[0.5; 3]);
    let cfg = RewardLossConfig::default();
    let fwd = s(&bradley_terry_loss(&c, &r, None, Some(&half), &cfg).unwrap());
    let back = s(&bradley_terry_loss(&r, &c, None, Some(&half), &cfg).unwrap());
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    let want = [0.5f64, -2.0, 4.0].iter().map(|d| 0.5 * (softplus(-d) + softplus(*d))).sum::<f64>() / 3.0;
    assert_close("p = 1/2", fwd, want, 1e-12, 0.0);
    assert_close("swapped", back, want, 1e-12, 0.0);
    let e = bradley_terry_loss(&c, &r, None, Some(&t1(&[0.5, 1.2, 1.0])), &cfg).unwrap_err().to_string();
    assert!(e.contains("strength") && e.contains("1.2"), "{e}");
}

#[test]
fn ensembles_and_preference_strength() {
    let sc = t2(&[vec![1.0, 2.0], vec![3.0, -2.0], vec![2.0, 0.0]]); // [M=3, B=2]
    assert_eq!(v1(&ensemble_aggregate(&sc, EnsembleAggregation::Mean).unwrap()), vec![2.0, 0.0]);
    assert_eq!(v1(&ensemble_aggregate(&sc, EnsembleAggregation::Min).unwrap()), vec![1.0, -2.0]);
    let uwo = v1(&ensemble_aggregate(&sc, EnsembleAggregation::MeanMinusVar { lambda: 0.5 }).unwrap());
    assert_all_close("uwo", &uwo, &[2.0 - 0.5 * (2.0 / 3.0), 0.0 - 0.5 * (8.0 / 3.0)], 1e-12, 1e-12);
    let rej = t2(&[vec![0.0, 0.0], vec![1.0, 0.0], vec![0.0, 1.0]]);
    let (m, sd) = preference_strength(&sc, &rej).unwrap();
    // d = [[1, 2], [2, −2], [2, −1]]
    assert_all_close("mean", &v1(&m), &[5.0 / 3.0, -1.0 / 3.0], 1e-12, 1e-12);
    let sd0 = ((2.0 * (1.0f64 / 3.0).powi(2) + (2.0f64 / 3.0).powi(2)) / 2.0).sqrt();
    let sd1 = (((7.0f64 / 3.0).powi(2) + (5.0f64 / 3.0).powi(2) + (2.0f64 / 3.0).powi(2)) / 2.0).sqrt();
    assert_all_close("std", &v1(&sd), &[sd0, sd1], 1e-12, 1e-12);
}

#[test]
fn lipo_lambda_at_k2_is_scaled_dpo() {
    let pc = [-10.0, -12.0, -7.5];
    let pr = [-11.0, -9.0, -8.0];
    let rc = [-10.5, -11.0, -7.0];
    let rr = [-10.0, -9.5, -8.5];
    let beta = 0.1;
    let dpo = dpo_loss(&t1(&pc), &t1(&pr), &t1(&rc), &t1(&rr), &DpoConfig::default(), &DpoExtras::default()).unwrap();
    let pol = t2(&(0..3).map(|i| vec![pc[i], pr[i]]).collect::<Vec<_>>());
    let rf = t2(&(0..3).map(|i| vec![rc[i], rr[i]]).collect::<Vec<_>>());
    let labels = t2(&vec![vec![1.0, 0.0]; 3]);
    let mask = t2(&vec![vec![1.0, 1.0]; 3]);
    let lipo = s(&lipo_lambda_loss(&pol, &rf, &labels, &mask, beta).unwrap());
    let scale = 1.0 - 1.0 / 3f64.log2();
    assert_close("lipo k=2", lipo, scale * s(&dpo.loss), 1e-12, 0.0);
    // K = 4 with padding equals the unpadded K = 3 list
    let pol3 = t2(&[vec![-3.0, -4.0, -5.0]]);
    let ref3 = t2(&[vec![-3.5, -3.0, -5.5]]);
    let lab3 = t2(&[vec![2.0, 1.0, 0.0]]);
    let a = s(&lipo_lambda_loss(&pol3, &ref3, &lab3, &t2(&[vec![1.0; 3]]), beta).unwrap());
    let pol4 = t2(&[vec![-3.0, 0.0, -4.0, -5.0]]);
    let ref4 = t2(&[vec![-3.5, 0.0, -3.0, -5.5]]);
    let lab4 = t2(&[vec![2.0, 9.0, 1.0, 0.0]]);
    let b = s(&lipo_lambda_loss(&pol4, &ref4, &lab4, &t2(&[vec![1.0, 0.0, 1.0, 1.0]]), beta).unwrap());
    assert_close("lipo padding", a, b, 1e-12, 0.0);
}

proptest! {
    #[test]
    fn bradley_terry_is_finite_and_ln2_at_tie(x in -50.0f64..50.0) {
        let l = s(&bradley_terry_loss(&t1(&[x]), &t1(&[x]), None, None, &RewardLossConfig::default()).unwrap());
        prop_assert!((l - std::f64::consts::LN_2).abs() < 1e-12);
    }
}
