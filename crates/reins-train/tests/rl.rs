//! PPO/GRPO/RLOO/REINFORCE++ pieces: invariants and hand-computed values.

mod common;

use candle_core::{Device, Tensor, Var};
use common::*;
use proptest::prelude::*;
use reins_train::losses::*;
use reins_train::rl::*;

/// TRL `PPOTrainer`'s GAE loop, literally.
fn gae_loop(r: &[Vec<f64>], v: &[Vec<f64>], m: &[Vec<f64>], gamma: f64, lam: f64) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (b, t) = (r.len(), r[0].len());
    let mut adv = vec![vec![0.0; t]; b];
    let mut ret = vec![vec![0.0; t]; b];
    for i in 0..b {
        let mut last = 0.0;
        for j in (0..t).rev() {
            let next = if j + 1 < t { v[i][j + 1] * m[i][j + 1] } else { 0.0 };
            let delta = r[i][j] * m[i][j] + gamma * next - v[i][j] * m[i][j];
            last = delta + gamma * lam * last;
            adv[i][j] = last * m[i][j];
            ret[i][j] = (last + v[i][j] * m[i][j]) * m[i][j];
        }
    }
    (adv, ret)
}

fn mat(b: usize, t: usize, vals: &[f64]) -> Vec<Vec<f64>> {
    (0..b).map(|i| vals[i * t..(i + 1) * t].to_vec()).collect()
}

fn lens_mask(b: usize, t: usize, lens: &[usize]) -> Vec<Vec<f64>> {
    (0..b).map(|i| (0..t).map(|j| if j < lens[i] { 1.0 } else { 0.0 }).collect()).collect()
}

proptest! {
    #[test]
    fn vectorised_gae_equals_the_loop(
        vals in proptest::collection::vec(-3.0f64..3.0, 2 * 3 * 9),
        lens in proptest::collection::vec(0usize..=9, 3),
        gamma in 0.5f64..1.0, lam in 0.0f64..1.0,
    ) {
        let (b, t) = (3, 9);
        let r = mat(b, t, &vals[..b * t]);
        let v = mat(b, t, &vals[b * t..]);
        let m = lens_mask(b, t, &lens);
        let (adv, ret) = gae(&t2(&r), &t2(&v), &t2(&m), gamma, lam).unwrap();
        let (wa, wr) = gae_loop(&r, &v, &m, gamma, lam);
        let fl = |x: &Vec<Vec<f64>>| x.iter().flatten().copied().collect::<Vec<_>>();
        for (a, w) in v1(&adv).iter().zip(fl(&wa)) { prop_assert!((a - w).abs() < 1e-9, "{a} vs {w}"); }
        for (a, w) in v1(&ret).iter().zip(fl(&wr)) { prop_assert!((a - w).abs() < 1e-9); }
    }

    #[test]
    fn masked_whiten_has_zero_mean_unit_var(vals in proptest::collection::vec(-10.0f64..10.0, 24), lens in proptest::collection::vec(2usize..=8, 3)) {
        let x = t2(&mat(3, 8, &vals));
        let m = lens_mask(3, 8, &lens);
        let w = masked_whiten(&x, &t2(&m), true).unwrap();
        let mut sel = vec![];
        for (i, row) in m.iter().enumerate() { for (j, &mm) in row.iter().enumerate() { if mm > 0.0 { sel.push(v1(&w)[i * 8 + j]); } } }
        let n = sel.len() as f64;
        let mean = sel.iter().sum::<f64>() / n;
        let var = sel.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        prop_assert!(mean.abs() < 1e-9);
        let mut xs = vec![];
        for (i, row) in m.iter().enumerate() { for (j, &mm) in row.iter().enumerate() { if mm > 0.0 { xs.push(vals[i * 8 + j]); } } }
        let mu = xs.iter().sum::<f64>() / n;
        let raw_var = xs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (n - 1.0);
        // unit variance up to TRL's +1e-8 in the denominator
        prop_assert!((var - raw_var / (raw_var + 1e-8)).abs() < 1e-9);
        // shift_mean = false adds the mean back
        let w2 = masked_whiten(&x, &t2(&m), false).unwrap();
        let mu = s(&masked_mean(&x, &t2(&m)).unwrap());
        for (a, b) in v1(&w2).iter().zip(v1(&w)) { prop_assert!((a - b - mu).abs() < 1e-9); }
    }

    #[test]
    fn k3_is_nonnegative_and_k2_too(a in proptest::collection::vec(-20.0f64..0.0, 10), b in proptest::collection::vec(-20.0f64..0.0, 10)) {
        let k3 = kl_estimate(&t1(&a), &t1(&b), KlEstimator::K3).unwrap();
        prop_assert!(v1(&k3).iter().all(|x| *x >= -1e-12));
        let k2 = kl_estimate(&t1(&a), &t1(&b), KlEstimator::K2).unwrap();
        prop_assert!(v1(&k2).iter().all(|x| *x >= 0.0));
    }

    #[test]
    fn clipped_objective_is_below_unclipped(
        lp in proptest::collection::vec(-5.0f64..0.0, 12), old in proptest::collection::vec(-5.0f64..0.0, 12),
        adv in proptest::collection::vec(-2.0f64..2.0, 12), eps in 0.05f64..0.5,
    ) {
        let m = t2(&[vec![1.0; 6], vec![1.0; 6]]);
        let (l, o, a) = (t2(&mat(2, 6, &lp)), t2(&mat(2, 6, &old)), t2(&mat(2, 6, &adv)));
        let out = ppo_policy_loss(&l, &o, &a, &m, eps).unwrap();
        let ratio: Vec<f64> = lp.iter().zip(&old).map(|(x, y)| (x - y).exp()).collect();
        let unclipped: Vec<f64> = ratio.iter().zip(&adv).map(|(r, a)| -a * r).collect();
        // loss = −objective: clipped objective ≤ unclipped ⇔ loss ≥ unclipped loss
        for (c, u) in v1(&out.per_token_loss).iter().zip(&unclipped) { prop_assert!(*c >= *u - 1e-12); }
        let cf = s(&out.clipfrac);
        prop_assert!((0.0..=1.0).contains(&cf));
    }
}

#[test]
fn ppo_policy_and_value_loss_by_hand() {
    let m = t2(&[vec![1.0, 1.0, 0.0]]);
    let lp = t2(&[vec![(1.5f64).ln(), (0.5f64).ln(), 3.0]]);
    let old = t2(&[vec![0.0, 0.0, 0.0]]);
    let adv = t2(&[vec![1.0, -1.0, 5.0]]);
    let out = ppo_policy_loss(&lp, &old, &adv, &m, 0.2).unwrap();
    // token 0: ratio 1.5, A = 1 → max(−1.5, −1.2) = −1.2 (clipped); token 1: ratio .5, A = −1
    // → max(.5, .8) = .8 (clipped). Mean = −0.2, clipfrac 1.
    assert_close("pg", s(&out.loss), -0.2, 1e-12, 1e-12);
    assert_close("clipfrac", s(&out.clipfrac), 1.0, 0.0, 0.0);
    let akl = 0.5 * ((1.5f64).ln().powi(2) + (0.5f64).ln().powi(2)) / 2.0;
    assert_close("approxkl", s(&out.approx_kl), akl, 1e-12, 0.0);
    let v = t2(&[vec![1.0, 0.0, 9.0]]);
    let vo = t2(&[vec![0.5, 0.5, 0.0]]);
    let ret = t2(&[vec![2.0, 0.0, 0.0]]);
    let vl = ppo_value_loss(&v, &vo, &ret, &m, 0.2).unwrap();
    // token 0: (1−2)² = 1 vs (0.7−2)² = 1.69 → 1.69 ; token 1: 0 vs (0.3)² = .09 → .09
    assert_close("vf", s(&vl.loss), 0.5 * (1.69 + 0.09) / 2.0, 1e-12, 0.0);
    assert_close("vf clipfrac", s(&vl.clipfrac), 1.0, 0.0, 0.0);
}

#[test]
fn entropy_of_uniform_is_ln_v_and_differentiable() {
    let l = Var::new(&[[0.0f32; 7], [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, -1.0]], &Device::Cpu).unwrap();
    let h = entropy_from_logits(l.as_tensor()).unwrap();
    assert_close("uniform", v1(&h)[0], 7f64.ln(), 1e-6, 0.0);
    let p: Vec<f64> = [1.0f64, 2.0, 3.0, 0.0, 0.0, 0.0, -1.0].iter().map(|x| x.exp()).collect();
    let z: f64 = p.iter().sum();
    let want: f64 = -p.iter().map(|x| (x / z) * (x / z).ln()).sum::<f64>();
    assert_close("peaked", v1(&h)[1], want, 1e-5, 0.0);
    let g = h.sum_all().unwrap().backward().unwrap();
    assert!(g.get(l.as_tensor()).is_some());
}

#[test]
fn kl_penalized_rewards_put_the_score_at_the_last_real_token() {
    let kl = t2(&[vec![0.1, 0.2, 0.3, 0.4], vec![1.0, 1.0, 1.0, 1.0]]);
    let m = t2(&[vec![1.0, 1.0, 1.0, 0.0], vec![0.0, 1.0, 1.0, 1.0]]);
    let scores = t1(&[5.0, -2.0]);
    let r = kl_penalized_rewards(&kl, &m, Some(&scores), None, 0.5).unwrap();
    let want = [-0.05, -0.1, -0.15 + 5.0, 0.0, 0.0, -0.5, -0.5, -0.5 - 2.0];
    assert_all_close("rewards", &v1(&r), &want, 1e-12, 1e-12);
    let tok = t2(&[vec![1.0, 0.0, 0.0, 7.0], vec![0.0; 4]]);
    let r2 = kl_penalized_rewards(&kl, &m, None, Some(&tok), 0.0).unwrap();
    assert_eq!(v1(&r2)[0], 1.0);
    assert_eq!(v1(&r2)[3], 0.0); // masked
    let k1 = kl_estimate(&t1(&[-1.0]), &t1(&[-1.5]), KlEstimator::K1).unwrap();
    assert_close("k1", v1(&k1)[0], 0.5, 1e-12, 0.0);
    let k3 = kl_estimate(&t1(&[-1.0]), &t1(&[-1.5]), KlEstimator::K3).unwrap();
    assert_close("k3", v1(&k3)[0], (-0.5f64).exp() + 0.5 - 1.0, 1e-12, 0.0);
}

#[test]
fn kl_controllers() {
    let mut f = KlController::Fixed { value: 0.05 };
    f.update(100.0, 10);
    assert_eq!(f.value(), 0.05);
    let mut a = KlController::Adaptive { value: 0.2, target: 6.0, horizon: 10000.0 };
    a.update(12.0, 256); // error clipped to 0.2
    assert_close("adaptive up", a.value(), 0.2 * (1.0 + 0.2 * 256.0 / 10000.0), 1e-12, 0.0);
    let mut a = KlController::Adaptive { value: 0.2, target: 6.0, horizon: 10000.0 };
    a.update(5.7, 100); // error −0.05
    assert_close("adaptive down", a.value(), 0.2 * (1.0 - 0.05 * 100.0 / 10000.0), 1e-12, 0.0);
}

#[test]
fn grpo_advantages_group_batch_and_none() {
    let r = t1(&[1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0, 3.0]);
    let g = v1(&grpo_advantages(&r, 4, ScaleRewards::Group).unwrap());
    let std = (4.0f64 * 0.25 / 3.0).sqrt(); // unbiased std of [1, 0, 0, 1]
    assert_all_close(
        "group",
        &g[..4],
        &[0.5 / (std + 1e-4), -0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.5 / (std + 1e-4)],
        1e-12,
        0.0,
    );
    assert_eq!(&g[4..], &[0.0; 4]); // zero-std group
    let n = v1(&grpo_advantages(&r, 4, ScaleRewards::None).unwrap());
    assert_eq!(n, vec![0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, 0.0]);
    let vals = [1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0, 3.0];
    let mu = vals.iter().sum::<f64>() / 8.0;
    let bstd = (vals.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / 7.0).sqrt();
    let b = v1(&grpo_advantages(&r, 4, ScaleRewards::Batch).unwrap());
    assert_close("batch", b[0], 0.5 / (bstd + 1e-4), 1e-12, 0.0);
    assert!(grpo_advantages(&r, 3, ScaleRewards::Group).is_err());
}

#[test]
fn grpo_loss_normalisations() {
    // on-policy: ratio 1, loss_t = −A (+ β k3)
    let lp = Var::new(&[[-1.0f64, -2.0, -0.5], [-1.0, -1.0, -1.0]], &Device::Cpu).unwrap();
    let m = t2(&[vec![1.0, 1.0, 0.0], vec![1.0, 1.0, 1.0]]);
    let adv = t1(&[2.0, -1.0]);
    let mut cfg = GrpoLossConfig { loss_type: GrpoLossType::Grpo, ..Default::default() };
    let l = s(&grpo_loss(lp.as_tensor(), None, None, &adv, &m, &cfg, None).unwrap().loss);
    assert_close("grpo", l, (-2.0 + 1.0) / 2.0, 1e-12, 0.0);
    cfg.loss_type = GrpoLossType::Bnpo;
    let l = s(&grpo_loss(lp.as_tensor(), None, None, &adv, &m, &cfg, None).unwrap().loss);
    assert_close("bnpo", l, (-2.0 * 2.0 + 3.0) / 5.0, 1e-12, 0.0);
    cfg.loss_type = GrpoLossType::DrGrpo;
    cfg.max_completion_length = 4;
    let l = s(&grpo_loss(lp.as_tensor(), None, None, &adv, &m, &cfg, None).unwrap().loss);
    assert_close("dr_grpo", l, (-4.0 + 3.0) / 8.0, 1e-12, 0.0);
    cfg.loss_type = GrpoLossType::Dapo;
    let l = s(&grpo_loss(lp.as_tensor(), None, None, &adv, &m, &cfg, Some(10.0)).unwrap().loss);
    assert_close("dapo", l, (-4.0 + 3.0) / 10.0, 1e-12, 0.0);
    // β k3 with a reference; gradient of the on-policy loss is −A per token (policy gradient)
    cfg.loss_type = GrpoLossType::Grpo;
    cfg.beta = 0.1;
    let rf = t2(&[vec![-1.5, -2.0, -0.5], vec![-1.0, -1.2, -1.0]]);
    let out = grpo_loss(lp.as_tensor(), None, Some(&rf), &adv, &m, &cfg, None).unwrap();
    let k3 = |a: f64, b: f64| (b - a).exp() - (b - a) - 1.0;
    let kl_mean = (k3(-1.0, -1.5) + k3(-2.0, -2.0) + k3(-1.0, -1.0) + k3(-1.0, -1.2) + k3(-1.0, -1.0)) / 5.0;
    assert_close("kl metric", s(out.kl.as_ref().unwrap()), kl_mean, 1e-12, 0.0);
    let want = ((-2.0 * 2.0 + 0.1 * (k3(-1.0, -1.5) + 0.0)) / 2.0 + (3.0 + 0.1 * (k3(-1.0, -1.2))) / 3.0) / 2.0;
    assert_close("grpo+kl", s(&out.loss), want, 1e-12, 0.0);
    let g = grpo_loss(
        lp.as_tensor(),
        None,
        None,
        &adv,
        &m,
        &GrpoLossConfig { loss_type: GrpoLossType::Grpo, ..Default::default() },
        None,
    )
    .unwrap()
    .loss
    .backward()
    .unwrap();
    let gv = v1(g.get(lp.as_tensor()).unwrap());
    assert_all_close("pg grad", &gv, &[-1.0 / 2.0, -1.0 / 2.0, 0.0, 0.5 / 3.0, 0.5 / 3.0, 0.5 / 3.0], 1e-12, 1e-12);
    // off-policy clipping metrics
    let old = t2(&[vec![-1.5, -2.0, -0.5], vec![-0.5, -1.0, -1.0]]);
    let out = grpo_loss(lp.as_tensor(), Some(&old), None, &adv, &m, &GrpoLossConfig::default(), None).unwrap();
    // token (0,0): ratio e^0.5 > 1.2 with A > 0 → high; (1,0): e^−0.5 < 0.8 with A < 0 → low
    assert_close("high", s(&out.clip_ratio_high), 1.0 / 5.0, 1e-12, 0.0);
    assert_close("low", s(&out.clip_ratio_low), 1.0 / 5.0, 1e-12, 0.0);
    assert_close("region", s(&out.clip_ratio_region), 2.0 / 5.0, 1e-12, 0.0);
}

#[test]
fn rloo_reinforce_pp_and_remax() {
    let r = t1(&[1.0, 2.0, 6.0, 0.0, 0.0, 3.0]);
    let a = v1(&rloo_advantages(&r, 3, false).unwrap());
    assert_all_close("rloo", &a, &[1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5, 0.0 - 1.5, 0.0 - 1.5, 3.0 - 0.0], 1e-12, 0.0);
    let an = v1(&rloo_advantages(&r, 3, true).unwrap());
    let mu = a.iter().sum::<f64>() / 6.0;
    let sd = (a.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / 5.0).sqrt();
    assert_close("rloo norm", an[0], (a[0] - mu) / (sd + 1e-4), 1e-12, 0.0);
    assert!(rloo_advantages(&r, 1, false).is_err());
    // REINFORCE++: γ = 1 reward-to-go then global whitening over real tokens
    let tr = t2(&[vec![0.0, 0.0, 1.0, 0.0], vec![0.0, -1.0, 0.0, 0.0]]);
    let m = t2(&[vec![1.0, 1.0, 1.0, 0.0], vec![1.0, 1.0, 0.0, 0.0]]);
    let adv = v1(&reinforce_pp_advantages(&tr, &m, 1.0).unwrap());
    let g = [1.0, 1.0, 1.0, -1.0, -1.0];
    let mu = g.iter().sum::<f64>() / 5.0;
    let sd = (g.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / 4.0 + 1e-8).sqrt();
    let w: Vec<f64> = g.iter().map(|x| (x - mu) / sd).collect();
    assert_all_close("rpp", &adv, &[w[0], w[1], w[2], 0.0, w[3], w[4], 0.0, 0.0], 1e-9, 1e-12);
    let rm = v1(&remax_advantages(&t1(&[1.0, 0.5]), &t1(&[0.2, 0.9])).unwrap());
    assert_all_close("remax", &rm, &[0.8, -0.4], 1e-12, 1e-12);
    let _ = Tensor::new(0f32, &Device::Cpu);
}

/// The same sequences left- or right-padded get the same advantages on their real tokens.
#[test]
fn gae_does_not_depend_on_padding_side() {
    let r = [0.5, -1.0, 2.0];
    let v = [0.1, 0.3, -0.2];
    let right = gae(
        &t2(&[vec![r[0], r[1], r[2], 9.0, 9.0]]),
        &t2(&[vec![v[0], v[1], v[2], 7.0, 7.0]]),
        &t2(&[vec![1.0, 1.0, 1.0, 0.0, 0.0]]),
        0.99,
        0.95,
    )
    .unwrap();
    let left = gae(
        &t2(&[vec![9.0, 9.0, r[0], r[1], r[2]]]),
        &t2(&[vec![7.0, 7.0, v[0], v[1], v[2]]]),
        &t2(&[vec![0.0, 0.0, 1.0, 1.0, 1.0]]),
        0.99,
        0.95,
    )
    .unwrap();
    assert_all_close("adv", &v1(&right.0)[..3], &v1(&left.0)[2..], 1e-12, 1e-12);
    assert_all_close("ret", &v1(&right.1)[..3], &v1(&left.1)[2..], 1e-12, 1e-12);
}

/// GSPO-style sequence ratios: one ratio per row from the mean token log-ratio.
#[test]
fn grpo_sequence_level_ratio() {
    let lp = t2(&[vec![-1.0, -1.0, -9.0]]);
    let old = t2(&[vec![-1.1, -0.95, 0.0]]);
    let m = t2(&[vec![1.0, 1.0, 0.0]]);
    let cfg = GrpoLossConfig {
        loss_type: GrpoLossType::Grpo,
        importance_sampling_level: ImportanceSamplingLevel::Sequence,
        ..Default::default()
    };
    let out = grpo_loss(&lp, Some(&old), None, &t1(&[1.0]), &m, &cfg, None).unwrap();
    let ratio = ((0.1f64 - 0.05) / 2.0).exp(); // inside [0.8, 1.2]
    assert_close("seq", s(&out.loss), -ratio, 1e-12, 0.0);
}

proptest! {
    /// Skipping masked tokens equals GAE on the compacted sequence.
    #[test]
    fn gae_skip_masked_equals_compacted(vals in proptest::collection::vec(-3.0f64..3.0, 16), bits in proptest::collection::vec(0u8..2, 8)) {
        let (r, v) = (&vals[..8], &vals[8..]);
        let m: Vec<f64> = bits.iter().map(|&x| x as f64).collect();
        let (a, rt) = gae_skip_masked(&t2(&[r.to_vec()]), &t2(&[v.to_vec()]), &t2(std::slice::from_ref(&m)), 0.9, 0.8).unwrap();
        let keep: Vec<usize> = (0..8).filter(|&j| m[j] > 0.5).collect();
        if keep.is_empty() { return Ok(()); }
        let rc: Vec<f64> = keep.iter().map(|&j| r[j]).collect();
        let vc: Vec<f64> = keep.iter().map(|&j| v[j]).collect();
        let (ac, rtc) = gae(&t2(&[rc]), &t2(&[vc]), &t2(&[vec![1.0; keep.len()]]), 0.9, 0.8).unwrap();
        let (a, rt, ac, rtc) = (v1(&a), v1(&rt), v1(&ac), v1(&rtc));
        for (k, &j) in keep.iter().enumerate() {
            prop_assert!((a[j] - ac[k]).abs() < 1e-9);
            prop_assert!((rt[j] - rtc[k]).abs() < 1e-9);
        }
        for j in 0..8 { if m[j] < 0.5 { prop_assert_eq!(a[j], 0.0); } }
    }
}

#[test]
fn reinforce_pp_baseline_by_hand() {
    let scores = t1(&[1.0, 3.0, 0.0, 0.0]);
    let m = t2(&[vec![1.0, 1.0], vec![1.0, 0.0], vec![1.0, 1.0], vec![1.0, 0.0]]);
    let a = v1(&reinforce_pp_baseline_advantages(&scores, &m, 2).unwrap());
    // centred: [−1, 1, 0, 0] on real tokens: [−1, −1, 1, 0, 0, 0]
    let x = [-1.0, -1.0, 1.0, 0.0, 0.0, 0.0];
    let mu = x.iter().sum::<f64>() / 6.0;
    let sd = (x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 5.0 + 1e-8).sqrt();
    let w: Vec<f64> = x.iter().map(|v| (v - mu) / sd).collect();
    assert_all_close("rpp-b", &a, &[w[0], w[1], w[2], 0.0, w[3], w[4], w[5], 0.0], 1e-9, 1e-12);
}

#[test]
fn rloo_sequence_loss_uses_summed_logps_and_one_ratio_per_sequence() {
    let lp = Var::new(&[[-1.0f64, -2.0, -0.5], [-1.0, -1.0, -1.0]], &Device::Cpu).unwrap();
    let m = t2(&[vec![1.0, 1.0, 0.0], vec![1.0, 1.0, 1.0]]);
    let adv = t1(&[2.0, -1.0]);
    // on-policy: loss −mean(A), gradient −A_b / B on every completion token (summed, not averaged)
    let out = rloo_sequence_loss(lp.as_tensor(), &lp.as_tensor().detach(), &adv, &m, 0.2, 0.2).unwrap();
    assert_close("loss", s(&out.loss), -(2.0 - 1.0) / 2.0, 1e-12, 0.0);
    let g = out.loss.backward().unwrap();
    let gv = v1(g.get(lp.as_tensor()).unwrap());
    assert_all_close("grad", &gv, &[-1.0, -1.0, 0.0, 0.5, 0.5, 0.5], 1e-12, 1e-12);
    // off-policy: sequence 0 has Σ log-ratio 0.6 → ρ = e^0.6 > 1.2 with A > 0: clipped high
    let old = t2(&[vec![-1.3, -2.3, -9.0], vec![-1.0, -1.0, -1.0]]);
    let out = rloo_sequence_loss(lp.as_tensor(), &old, &adv, &m, 0.2, 0.2).unwrap();
    assert_close("high", s(&out.clip_ratio_high), 0.5, 1e-12, 0.0);
    assert_close("clipped loss", s(&out.loss), -(1.2 * 2.0 - 1.0) / 2.0, 1e-12, 0.0);
}

#[test]
fn bias_corrected_kl_adds_k3_to_the_gradient_on_policy() {
    // one token, A = 0: loss = β ρ k3 with ρ ≡ 1; d/dlp = β (k3 + 1 − e^(ref − lp)).
    let lp = Var::new(&[[-1.0f64]], &Device::Cpu).unwrap();
    let (m, adv, rf) = (t2(&[vec![1.0]]), t1(&[0.0]), t2(&[vec![-1.5]]));
    let k3 = (-0.5f64).exp() + 0.5 - 1.0;
    for (corrected, want) in [(true, 0.1 * (k3 + 1.0 - (-0.5f64).exp())), (false, 0.1 * (1.0 - (-0.5f64).exp()))] {
        let cfg = GrpoLossConfig { beta: 0.1, use_bias_correction_kl: corrected, ..Default::default() };
        let out = grpo_loss(lp.as_tensor(), None, Some(&rf), &adv, &m, &cfg, None).unwrap();
        assert_close("kl value", s(out.kl.as_ref().unwrap()), k3, 1e-12, 0.0);
        let g = out.loss.backward().unwrap();
        assert_close("kl grad", v1(g.get(lp.as_tensor()).unwrap())[0], want, 1e-12, 0.0);
    }
}
