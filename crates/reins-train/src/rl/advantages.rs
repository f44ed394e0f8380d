//! Advantage estimators and whitening. Text-free: everything works on `[B, T]` reward/value
//! tensors with a mask, so it serves language models and classic control alike.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::losses::ops::masked_mean_all;
use crate::{Result, TrainError};

/// TRL `masked_mean` over all entries where `mask` is 1 (scalar).
pub fn masked_mean(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    masked_mean_all(values, mask)
}

/// TRL `masked_var`: variance over masked entries, with Bessel's correction when `unbiased`.
pub fn masked_var(values: &Tensor, mask: &Tensor, unbiased: bool) -> Result<Tensor> {
    let mean = masked_mean_all(values, mask)?;
    let centered = values.broadcast_sub(&mean)?;
    let var = masked_mean_all(&centered.sqr()?, mask)?;
    if unbiased {
        let n = mask.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        if n <= 1.0 {
            return Err(TrainError::Input(format!("masked_var: need ≥ 2 masked entries, got {n}")));
        }
        Ok((var * (n / (n - 1.0)))?)
    } else {
        Ok(var)
    }
}

/// TRL `masked_whiten`: `(x − μ) / sqrt(σ² + 1e-8)` with masked mean/unbiased variance; with
/// `shift_mean = false` the mean is added back. Entries outside the mask are returned as
/// computed (callers usually zero them). Shapes: any, `mask` same shape.
pub fn masked_whiten(values: &Tensor, mask: &Tensor, shift_mean: bool) -> Result<Tensor> {
    let mean = masked_mean_all(values, mask)?;
    let var = masked_var(values, mask, true)?;
    let mut w = values.broadcast_sub(&mean)?.broadcast_div(&(var + 1e-8)?.sqrt()?)?;
    if !shift_mean {
        w = w.broadcast_add(&mean)?;
    }
    Ok(w)
}

/// Generalized Advantage Estimation (Schulman et al., arXiv:1506.02438 Eq. 16; TRL
/// `PPOTrainer`): `δ_t = r_t + γ V_{t+1} − V_t`, `A_t = Σ_{l≥0} (γλ)^l δ_{t+l}`, `R_t = A_t + V_t`,
/// with `V_T = 0`. Rewards and values are zeroed where `mask` is 0 (TRL fills padding with 0),
/// and both outputs are zeroed there. Vectorised as one `[B, T] × [T, T]` product with
/// `M[s, t] = (γλ)^{s−t}` for `s ≥ t`, so it runs on any device.
///
/// Shapes: `rewards`, `values`, `mask` `[B, T]` → `(advantages, returns)` `[B, T]`.
pub fn gae(rewards: &Tensor, values: &Tensor, mask: &Tensor, gamma: f64, lam: f64) -> Result<(Tensor, Tensor)> {
    let (b, t) = rewards.dims2()?;
    let dt = rewards.dtype();
    let mask = mask.to_dtype(dt)?;
    let r = (rewards.detach() * &mask)?;
    let v = (values.detach().to_dtype(dt)? * &mask)?;
    let next_v = Tensor::cat(&[v.narrow(1, 1, t - 1)?, Tensor::zeros((b, 1), dt, v.device())?], 1)?;
    let delta = ((r + (next_v * gamma)?)? - &v)?;
    let gl = gamma * lam;
    let mut m = vec![0f64; t * t];
    for s in 0..t {
        let mut p = 1.0;
        for tt in (0..=s).rev() {
            m[s * t + tt] = p;
            p *= gl;
        }
    }
    let m = Tensor::from_vec(m, (t, t), v.device())?.to_dtype(dt)?;
    let adv = delta.matmul(&m)?;
    let ret = (&adv + &v)?;
    Ok(((adv * &mask)?, (ret * &mask)?))
}

/// Discounted reward-to-go `G_t = Σ_{s≥t} γ^{s−t} r_s` (GAE with `V = 0`, `λ = 1`).
/// Shapes: `[B, T]` → `[B, T]`, zero where masked.
pub fn discounted_returns(rewards: &Tensor, mask: &Tensor, gamma: f64) -> Result<Tensor> {
    let zeros = rewards.zeros_like()?;
    Ok(gae(rewards, &zeros, mask, gamma, 1.0)?.0)
}

/// How GRPO scales group-centred rewards (TRL `scale_rewards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the group's std (GRPO, arXiv:2402.03300 §4.1.2). Default.
    #[default]
    Group,
    /// Divide by the std of the whole batch.
    Batch,
    /// No scaling (Dr. GRPO, arXiv:2503.20783 §3.1).
    None,
}

/// GRPO group-relative advantages (arXiv:2402.03300 §4.1.2; TRL 1.16):
/// `A_i = (r_i − mean_group(r)) / (std + 1e-4)` with the unbiased std of the group (or of the
/// batch), or no division for `ScaleRewards::None`. Completions of one prompt are contiguous.
/// Shapes: `rewards [N·G]` → `[N·G]`.
pub fn grpo_advantages(rewards: &Tensor, num_generations: usize, scale: ScaleRewards) -> Result<Tensor> {
    let n = rewards.dims1()?;
    if num_generations == 0 || n % num_generations != 0 {
        return Err(TrainError::Input(format!(
            "{n} rewards are not a multiple of num_generations = {num_generations}"
        )));
    }
    let g = rewards.reshape((n / num_generations, num_generations))?;
    let mean = g.mean_keepdim(1)?;
    let centered = g.broadcast_sub(&mean)?;
    let adv = match scale {
        ScaleRewards::None => centered,
        ScaleRewards::Group => {
            let std = if num_generations > 1 {
                (centered.sqr()?.sum_keepdim(1)? / (num_generations - 1) as f64)?.sqrt()?
            } else {
                mean.zeros_like()?
            };
            centered.broadcast_div(&(std + 1e-4)?)?
        }
        ScaleRewards::Batch => {
            let std = if n > 1 {
                let m = rewards.mean_all()?;
                (rewards.broadcast_sub(&m)?.sqr()?.sum_all()? / (n - 1) as f64)?.sqrt()?
            } else {
                Tensor::new(0f32, rewards.device())?.to_dtype(rewards.dtype())?
            };
            centered.broadcast_div(&(std + 1e-4)?)?
        }
    };
    Ok(adv.reshape(n)?)
}

/// RLOO leave-one-out advantages (Kool et al. 2019; Ahmadian et al., arXiv:2402.14740 Eq. 4;
/// TRL `RLOOTrainer`): `A_i = r_i − (Σ_j r_j − r_i)/(G − 1)`; optionally normalised over the
/// batch `(A − mean)/(std + 1e-4)` (TRL `normalize_advantages`). Shapes: `[N·G]` → `[N·G]`.
pub fn rloo_advantages(rewards: &Tensor, num_generations: usize, normalize: bool) -> Result<Tensor> {
    let n = rewards.dims1()?;
    if num_generations < 2 || n % num_generations != 0 {
        return Err(TrainError::Input(format!(
            "RLOO needs num_generations ≥ 2 dividing the batch ({n} rewards, G = {num_generations})"
        )));
    }
    let g = rewards.reshape((n / num_generations, num_generations))?;
    let sum = g.sum_keepdim(1)?;
    let baseline = (sum.broadcast_sub(&g)? / (num_generations - 1) as f64)?;
    let adv = (g - baseline)?.reshape(n)?;
    if !normalize {
        return Ok(adv);
    }
    let m = adv.mean_all()?;
    let c = adv.broadcast_sub(&m)?;
    let std = (c.sqr()?.sum_all()? / (n - 1) as f64)?.sqrt()?;
    Ok(c.broadcast_div(&(std + 1e-4)?)?)
}

/// REINFORCE++ advantages (Hu, arXiv:2501.03262 §3): per-token rewards (score at the last
/// token minus the KL penalty, see [`crate::losses::kl::kl_penalized_rewards`]), discounted
/// reward-to-go, then whitened over every real token of the global batch (no critic, no
/// per-prompt baseline). Shapes: `[B, T]` → `[B, T]`, zero where masked.
pub fn reinforce_pp_advantages(token_rewards: &Tensor, mask: &Tensor, gamma: f64) -> Result<Tensor> {
    let ret = discounted_returns(token_rewards, mask, gamma)?;
    let w = masked_whiten(&ret, mask, true)?;
    Ok((w * mask.to_dtype(ret.dtype())?)?)
}

/// ReMax advantages (Li et al., arXiv:2310.10505 Alg. 1): `A = r(x, y_sampled) − r(x, y_greedy)`.
/// Shapes: `[B]`, `[B]` → `[B]`.
pub fn remax_advantages(sampled_rewards: &Tensor, greedy_rewards: &Tensor) -> Result<Tensor> {
    Ok((sampled_rewards - greedy_rewards.detach())?)
}

/// GAE over the real tokens only: masked positions (environment/observation tokens of a
/// multi-turn episode, padding anywhere) are skipped, so the recursion links each real token
/// to the next *real* one: `δ_t = r_t + γ V_{next(t)} − V_t`. Equals [`gae`] on the sequence
/// with masked tokens removed; equals [`gae`] whenever the mask is one contiguous run.
/// Computed on the host. Shapes: `[B, T]` → `(advantages, returns)` `[B, T]`, 0 where masked.
pub fn gae_skip_masked(
    rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
    gamma: f64,
    lam: f64,
) -> Result<(Tensor, Tensor)> {
    let (b, t) = rewards.dims2()?;
    let r = rewards.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let v = values.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let m = mask.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let mut adv = vec![0f64; b * t];
    let mut ret = vec![0f64; b * t];
    for i in 0..b {
        let (mut last, mut next_v) = (0.0, 0.0);
        for j in (0..t).rev() {
            if m[i][j] < 0.5 {
                continue;
            }
            let delta = r[i][j] + gamma * next_v - v[i][j];
            last = delta + gamma * lam * last;
            adv[i * t + j] = last;
            ret[i * t + j] = last + v[i][j];
            next_v = v[i][j];
        }
    }
    let dev = rewards.device();
    let dt = rewards.dtype();
    Ok((Tensor::from_vec(adv, (b, t), dev)?.to_dtype(dt)?, Tensor::from_vec(ret, (b, t), dev)?.to_dtype(dt)?))
}

/// REINFORCE++-baseline (Hu, arXiv:2501.03262 §3.3): subtract the prompt's group mean of the
/// sequence scores, place the result on every real token, then whiten over all real tokens of
/// the batch. Completions of one prompt are contiguous. Shapes: `scores [N·G]`, `mask [N·G, T]`
/// → `[N·G, T]`, 0 where masked.
pub fn reinforce_pp_baseline_advantages(scores: &Tensor, mask: &Tensor, num_generations: usize) -> Result<Tensor> {
    let centered = grpo_advantages(scores, num_generations, ScaleRewards::None)?;
    let mask = mask.to_dtype(scores.dtype())?;
    let per_token = centered.unsqueeze(1)?.broadcast_mul(&mask)?;
    let w = masked_whiten(&per_token, &mask, true)?;
    Ok((w * mask)?)
}
