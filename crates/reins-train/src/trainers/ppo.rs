//! PPO for RLHF (Ziegler et al., arXiv:1909.08593; Ouyang et al., arXiv:2203.02155), TRL 1.16
//! `PPOTrainer` semantics: one completion per prompt, per-token rewards `−kl_coef·KL_t` plus the
//! score at the last token ([`kl_penalized_rewards`]), GAE on a learned value head ([`gae`]),
//! whitened advantages, then `num_ppo_epochs` passes of clipped policy and value losses over
//! `num_mini_batches` mini-batches. The KL coefficient is fixed, or adaptive
//! (`adap_kl_ctrl`, Ziegler et al. §2.2).
//!
//! Policy filtration (PF-PPO, Shen et al., arXiv:2409.06957): with `pf_filter` set, each prompt
//! gets `pf_num_samples` completions and only those the filter keeps ([`filter_rows`]: best and
//! worst, best and random, best of n, or reward bands) enter the update. `pf_filter = "auto"`
//! makes the paper's choice before training ([`PpoTrainer::choose_filter`]): the filter whose
//! kept samples of the initial policy have the highest R² between reward and held-out score.
//!
//! The learning-rate schedule advances once per step (rollout batch), as in TRL: all
//! `num_ppo_epochs` × `num_mini_batches` optimizer steps of a batch share its rate.
//!
//! The critic is a separate model with a value head (TRL's `value_model`), or — `value_model =
//! None` — a value head on the policy itself (shared trunk, one forward for both).
//!
//! Dense rewards: a reward source's per-token rewards ([`RewardSource::score_tokens`]; the
//! fine-grained segment rewards of Wu et al., arXiv:2306.01693) add to the KL penalty at their
//! tokens, logged as `objective/token_rewards` (mean sum per completion); `whiten_rewards`
//! whitens the summed rewards and adds their mean back (`shift_mean = False`), as that paper's
//! PPO does.
//!
//! Macro actions (MA-RLHF, Chai et al., arXiv:2410.02743; [`crate::rl::macro_actions`]): with
//! `termination_condition` set, GAE runs over spans of tokens — every `ngram` tokens, random
//! lengths, or where the reference's perplexity rises — with rewards and values aggregated per
//! span (`value_function`), and each token takes its span's advantage and return.

use candle_core::Tensor;
use reins_model::logprobs::token_logps;
use reins_model::{nn, Batch, Model};
use serde::{Deserialize, Serialize};

use super::metrics::{add_mean, completion_metrics, mean_reward, scalar};
use super::reference::Reference;
use super::rollout::{masked_row_sums, reference_logps, rollout, score_rollout, token_rewards_tensor, Rollout};
use super::Metrics;
use crate::losses::kl::{kl_estimate, kl_penalized_rewards, KlController, KlEstimator};
use crate::losses::ppo::{entropy_from_logits, ppo_policy_loss, ppo_value_loss};
use crate::optim::optimizer::Optimizer;
use crate::rewards::RewardSource;
use crate::rl::advantages::{gae, masked_mean, masked_whiten};
use crate::rl::filter::{auto_candidates, filter_rows, select_filter, FilterChoice, PolicyFilter};
use crate::rl::macro_actions::{macro_gae, MacroAggregation, MacroSpec, Termination};
use crate::run::Sample;
use crate::{Result, TrainError};

/// PPO options (TRL `PPOConfig` names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Passes over each rollout batch (default 4).
    pub num_ppo_epochs: usize,
    /// Mini-batches per pass; one optimizer step each (default 1).
    pub num_mini_batches: usize,
    /// KL coefficient (default 0.05); the initial value with `adap_kl_ctrl`.
    pub kl_coef: f64,
    /// `k1` (default) or `k3` per-token KL in the reward.
    pub kl_estimator: KlEstimator,
    /// Adapt `kl_coef` towards `target` KL (default false).
    pub adap_kl_ctrl: bool,
    /// Target KL of the adaptive controller (default 6.0).
    pub target: f64,
    /// Horizon of the adaptive controller, in samples (default 10000).
    pub horizon: f64,
    /// Policy ratio clip ε (default 0.2).
    pub cliprange: f64,
    /// Value clip (default 0.2).
    pub cliprange_value: f64,
    /// Value loss coefficient (default 0.1).
    pub vf_coef: f64,
    /// Discount γ (default 1.0).
    pub gamma: f64,
    /// GAE λ (default 0.95).
    pub lam: f64,
    /// Whiten the per-token rewards before GAE (default false).
    pub whiten_rewards: bool,
    /// Subtracted from the score of completions without an EOS (default off).
    pub missing_eos_penalty: Option<f32>,
    /// New tokens per completion at most (TRL `response_length`, default 53).
    pub response_length: usize,
    /// Sampling temperature, also applied in the loss (default 0.7).
    pub temperature: f64,
    /// Nucleus sampling (default 1.0 = off).
    pub top_p: f64,
    /// Top-k; 0 = off (default).
    pub top_k: usize,
    /// Sampler seed; generation `i` uses `seed + i` (default 42).
    pub seed: u64,
    /// PF-PPO filter: `none` (default), `best_worst`, `best_random`, `best_of_n`, `reward_band`,
    /// or `auto` (chosen by R² on held-out scores before training, [`PpoTrainer::choose_filter`]).
    pub pf_filter: PolicyFilter,
    /// PF-PPO: completions sampled per prompt before filtering (default 1; ≥ 2 with a filter).
    pub pf_num_samples: usize,
    /// PF-PPO `reward_band`: inclusive `[lo, hi]` reward bands to keep (default none).
    pub pf_reward_bands: Vec<(f32, f32)>,
    /// MA-RLHF macro actions: `none` (default, token-level PPO), `fixed`, `randomized` or `ppl`.
    pub termination_condition: Termination,
    /// MA-RLHF `fixed`: tokens per macro action (default 5, the paper's).
    pub ngram: usize,
    /// MA-RLHF `randomized`: uses of each length in {1, 2, 3, 5, 10} (default 1).
    pub repeat_times: usize,
    /// MA-RLHF: how a macro's rewards and values combine, `equal` (mean; default), `unit` (last
    /// token) or `position` (weights 1/(k+1)).
    pub value_function: MacroAggregation,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            num_ppo_epochs: 4,
            num_mini_batches: 1,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            adap_kl_ctrl: false,
            target: 6.0,
            horizon: 10000.0,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            gamma: 1.0,
            lam: 0.95,
            whiten_rewards: false,
            missing_eos_penalty: None,
            response_length: 53,
            temperature: 0.7,
            top_p: 1.0,
            top_k: 0,
            seed: 42,
            pf_filter: PolicyFilter::None,
            pf_num_samples: 1,
            pf_reward_bands: Vec::new(),
            termination_condition: Termination::None,
            ngram: 5,
            repeat_times: 1,
            value_function: MacroAggregation::Equal,
        }
    }
}

impl PpoConfig {
    /// The macro-action settings.
    pub fn macros(&self) -> MacroSpec {
        MacroSpec {
            termination: self.termination_condition,
            ngram: self.ngram,
            repeat_times: self.repeat_times,
            aggregation: self.value_function,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.num_ppo_epochs == 0 || self.num_mini_batches == 0 {
            return Err(TrainError::Config("num_ppo_epochs and num_mini_batches must be at least 1".into()));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::Config("temperature must be > 0".into()));
        }
        if !(0.0..=1.0).contains(&self.gamma) || !(0.0..=1.0).contains(&self.lam) {
            return Err(TrainError::Config("gamma and lam must be in [0, 1]".into()));
        }
        if self.adap_kl_ctrl && !(self.target > 0.0 && self.horizon > 0.0) {
            return Err(TrainError::Config("adap_kl_ctrl needs target > 0 and horizon > 0".into()));
        }
        if self.pf_num_samples == 0 {
            return Err(TrainError::Config("pf_num_samples must be at least 1".into()));
        }
        if self.pf_filter != PolicyFilter::None && self.pf_num_samples < 2 {
            return Err(TrainError::Config(format!(
                "pf_filter = {:?} needs pf_num_samples ≥ 2 completions per prompt to choose from",
                self.pf_filter
            )));
        }
        if self.pf_filter == PolicyFilter::RewardBand && self.pf_reward_bands.is_empty() {
            return Err(TrainError::Config(
                "pf_filter = \"reward_band\" needs pf_reward_bands, e.g. [[-10.0, 0.2], [0.8, 10.0]]".into(),
            ));
        }
        if self.pf_reward_bands.iter().any(|(lo, hi)| lo.is_nan() || hi.is_nan() || lo > hi) {
            return Err(TrainError::Config("pf_reward_bands: each band is [lo, hi] with lo ≤ hi".into()));
        }
        self.macros().validate()
    }
}

/// GAE over macro actions, row by row: each row's response tokens (where `mask` is 1) are cut
/// by `spec` and get their macro's advantage and return; `[N, T]` in and out, zero off the mask.
#[allow(clippy::too_many_arguments)]
fn macro_advantages(
    rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
    ref_logps: &Tensor,
    spec: &MacroSpec,
    gamma: f64,
    lam: f64,
    seed: u64,
) -> Result<(Tensor, Tensor)> {
    let f32_rows = |t: &Tensor| -> Result<Vec<Vec<f32>>> { Ok(t.to_dtype(candle_core::DType::F32)?.to_vec2()?) };
    let (r, v, m, lp) = (f32_rows(rewards)?, f32_rows(values)?, f32_rows(mask)?, f32_rows(ref_logps)?);
    let (n, t) = rewards.dims2()?;
    let (mut adv, mut ret) = (vec![0f32; n * t], vec![0f32; n * t]);
    for row in 0..n {
        let idx: Vec<usize> = (0..t).filter(|&j| m[row][j] > 0.0).collect();
        let pick = |xs: &[f32]| idx.iter().map(|&j| xs[j]).collect::<Vec<f32>>();
        let starts = spec.starts(idx.len(), &pick(&lp[row]), seed.wrapping_add(row as u64));
        let (a, g) = macro_gae(&pick(&r[row]), &pick(&v[row]), &starts, spec.aggregation, gamma, lam);
        for (k, &j) in idx.iter().enumerate() {
            adv[row * t + j] = a[k];
            ret[row * t + j] = g[k];
        }
    }
    let dev = rewards.device();
    let dt = rewards.dtype();
    Ok((Tensor::from_vec(adv, (n, t), dev)?.to_dtype(dt)?, Tensor::from_vec(ret, (n, t), dev)?.to_dtype(dt)?))
}

/// Policy log-probs, mask, logits and values `[N, T-1]` of a rollout's completion tokens.
struct Forward {
    logps: Tensor,
    mask: Tensor,
    logits: Tensor,
    values: Tensor,
}

fn forward(policy: &Model, critic: Option<&Model>, r: &Rollout, temperature: f64) -> Result<Forward> {
    let dev = policy.device();
    let batch = Batch::new(r.input_ids.clone(), r.attention_mask.clone())?;
    let hidden = policy.hidden(&batch)?;
    let logits = (policy.lm_logits(&hidden)? / temperature)?;
    let values = match critic {
        Some(c) => c.values_from_hidden(&c.hidden(&batch)?)?,
        None => policy.values_from_hidden(&hidden)?,
    };
    let ids = nn::ids_tensor(&r.input_ids, dev)?;
    let cm = nn::mask_tensor(&r.completion_mask, dev)?;
    let logps = token_logps(&logits, &ids, &cm)?;
    let t = cm.dim(1)?;
    // value of the context before each completion token, aligned with `logps`
    Ok(Forward { logps, mask: cm.narrow(1, 1, t - 1)?, values: values.narrow(1, 0, t - 1)?, logits })
}

pub struct PpoTrainer {
    pub policy: Model,
    /// Critic with a value head; `None`: the policy's own value head.
    pub value_model: Option<Model>,
    pub reference: Reference,
    pub reward: Box<dyn RewardSource>,
    pub cfg: PpoConfig,
    pub kl_ctl: KlController,
    /// Over the policy's and the critic's parameters.
    pub opt: Optimizer,
    pub generations: u64,
    pub num_tokens: f64,
    /// The last rollout's completions and scores (all of them, before filtering).
    pub last_samples: Vec<Sample>,
    /// What `pf_filter = "auto"` chose, once [`PpoTrainer::choose_filter`] ran.
    pub pf_choice: Option<FilterChoice>,
}

impl PpoTrainer {
    /// `opt` must cover the trainable parameters of `policy` and of `value_model`.
    pub fn new(
        policy: Model,
        value_model: Option<Model>,
        reference: Reference,
        reward: Box<dyn RewardSource>,
        cfg: PpoConfig,
        opt: Optimizer,
    ) -> Result<Self> {
        cfg.validate()?;
        let critic = value_model.as_ref().unwrap_or(&policy);
        if critic.value_head.is_none() {
            return Err(TrainError::Config(
                "ppo: the critic has no value head; load the value model (or the policy) with `value_head: true`"
                    .into(),
            ));
        }
        let kl_ctl = if cfg.adap_kl_ctrl {
            KlController::Adaptive { value: cfg.kl_coef, target: cfg.target, horizon: cfg.horizon }
        } else {
            KlController::Fixed { value: cfg.kl_coef }
        };
        Ok(PpoTrainer {
            policy,
            value_model,
            reference,
            reward,
            cfg,
            kl_ctl,
            opt,
            generations: 0,
            num_tokens: 0.0,
            last_samples: Vec::new(),
            pf_choice: None,
        })
    }

    /// PF-PPO's filter choice (arXiv:2409.06957 §4): samples `pf_num_samples` completions of
    /// each prompt from the current (initial) policy, scores them with the reward (the proxy)
    /// and with `heldout` (the actual score: tests passed, a gold judge), and sets `pf_filter`
    /// to the candidate whose kept samples have the highest R² between the two
    /// ([`select_filter`]; ties go to the earlier candidate, no filter first). Its own sampler
    /// stream: the training samples do not change.
    pub fn choose_filter(&mut self, prompts: &[Vec<u32>], heldout: &dyn RewardSource) -> Result<FilterChoice> {
        let c = &self.cfg;
        if c.pf_num_samples < 2 {
            return Err(TrainError::Config("choosing a PF-PPO filter needs pf_num_samples >= 2".into()));
        }
        if prompts.is_empty() {
            return Err(TrainError::Input("choosing a PF-PPO filter needs held-out prompts".into()));
        }
        let seed = c.seed ^ 0x5046_4155; // "PFAU": apart from the training sampler's seed + i
        let sampling = reins_model::SamplingConfig {
            max_new_tokens: c.response_length,
            do_sample: true,
            temperature: c.temperature,
            top_k: c.top_k,
            top_p: c.top_p,
            min_p: 0.0,
            seed,
            stop_on_eos: true,
        };
        let r = rollout(&self.policy.detached(), prompts, c.pf_num_samples, &sampling, false)?;
        let proxy = score_rollout(self.reward.as_ref(), &r, c.missing_eos_penalty)?;
        let actual = heldout.score(&r.prompts, &r.completions)?;
        let candidates = auto_candidates(&c.pf_reward_bands);
        let (best, r2) = select_filter(&candidates, &proxy, &actual, c.pf_num_samples, &c.pf_reward_bands, seed)?;
        let choice = FilterChoice { chosen: candidates[best], r2: candidates.into_iter().zip(r2).collect() };
        self.cfg.pf_filter = choice.chosen;
        self.pf_choice = Some(choice.clone());
        Ok(choice)
    }

    /// Samples `pf_num_samples` completions per prompt, scores them (with
    /// `missing_eos_penalty`) and applies the PF-PPO filter.
    fn sample(&mut self, prompts: &[Vec<u32>], m: &mut Metrics) -> Result<(Rollout, Vec<f32>)> {
        let c = &self.cfg;
        let sampling = reins_model::SamplingConfig {
            max_new_tokens: c.response_length,
            do_sample: true,
            temperature: c.temperature,
            top_k: c.top_k,
            top_p: c.top_p,
            min_p: 0.0,
            seed: c.seed.wrapping_add(self.generations),
            stop_on_eos: true,
        };
        self.generations += 1;
        let r = rollout(&self.policy, prompts, c.pf_num_samples, &sampling, false)?;
        let scores = score_rollout(self.reward.as_ref(), &r, c.missing_eos_penalty)?;
        self.last_samples = Sample::rows(&r.prompts, &r.completions, &scores);
        let n_all = scores.len();
        let mean_all = mean_reward(&scores);
        if c.pf_filter == PolicyFilter::None {
            return Ok((r, scores));
        }
        m.insert("pf/reward_before_filter".into(), mean_all);
        let seed = c.seed.wrapping_add(self.generations) ^ 0x5046_5050; // "PFPP"
        let mut rows = filter_rows(&scores, c.pf_num_samples, c.pf_filter, &c.pf_reward_bands, seed)?;
        m.insert("pf/kept_fraction".into(), rows.len() as f64 / n_all.max(1) as f64);
        if rows.is_empty() {
            // No completion fell in a reward band: train on all rather than skip the batch.
            rows = (0..n_all).collect();
        }
        let kept = rows.iter().map(|&i| scores[i]).collect();
        Ok((r.select(&rows), kept))
    }

    /// One rollout of `prompts` (`pf_num_samples` completions each, filtered), then
    /// `num_ppo_epochs` × `num_mini_batches` optimizer steps at one learning rate (the schedule
    /// advances once per call). TRL's metric names.
    pub fn train_step(&mut self, prompts: &[Vec<u32>]) -> Result<Metrics> {
        let mut m = Metrics::new();
        let (r, scores) = self.sample(prompts, &mut m)?;
        let c = &self.cfg;
        completion_metrics(&r, &mut m);
        self.num_tokens += r.num_tokens();
        let dev = self.policy.device().clone();
        let n = scores.len();
        let scores_t = Tensor::from_vec(scores, n, &dev)?;

        // Behaviour pass: old log-probs and values, no graph.
        let old = forward(
            &self.policy.detached(),
            self.value_model.as_ref().map(Model::detached).as_ref(),
            &r,
            c.temperature,
        )?;
        let (old_logps, old_values, mask) = (old.logps.detach(), old.values.detach(), old.mask);
        let ref_logps = reference_logps(&self.policy, &self.reference, &r, c.temperature)?;
        let kl = kl_estimate(&old_logps, &ref_logps, c.kl_estimator)?;
        let token_rewards = match self.reward.score_tokens(&r.prompts, &r.completions)? {
            Some(v) => {
                // Dense rewards (fine-grained segment rewards): their mean sum per completion.
                let sums: Vec<f32> = v.iter().map(|row| row.iter().sum()).collect();
                m.insert("objective/token_rewards".into(), mean_reward(&sums));
                Some(token_rewards_tensor(&r, &v, &dev)?)
            }
            None => None,
        };
        let beta = self.kl_ctl.value();
        let mut rewards = kl_penalized_rewards(&kl, &mask, Some(&scores_t), token_rewards.as_ref(), beta)?;
        if c.whiten_rewards {
            rewards = (masked_whiten(&rewards, &mask, false)? * &mask)?;
        }
        let (adv, returns) = if c.termination_condition == Termination::None {
            gae(&rewards, &old_values, &mask, c.gamma, c.lam)?
        } else {
            let seed = c.seed.wrapping_add(self.generations) ^ 0x4d41_5250; // "MARP"
            macro_advantages(&rewards, &old_values, &mask, &ref_logps, &c.macros(), c.gamma, c.lam, seed)?
        };
        let adv = (masked_whiten(&adv, &mask, true)? * &mask)?.detach();

        let seq_kl = masked_row_sums(&kl, &mask)?;
        let mean_kl = scalar(&seq_kl.mean_all()?)?;
        let mean_score = scalar(&scores_t.mean_all()?)?;
        m.insert("objective/kl".into(), mean_kl);
        m.insert("objective/scores".into(), mean_score);
        m.insert("objective/non_score_reward".into(), -beta * mean_kl);
        m.insert("objective/rlhf_reward".into(), mean_score - beta * mean_kl);
        m.insert("objective/entropy".into(), scalar(&masked_row_sums(&old_logps.neg()?, &mask)?.mean_all()?)?);
        m.insert("reward".into(), mean_score);

        // PPO epochs over mini-batches of rows.
        let mb = n.div_ceil(c.num_mini_batches);
        let updates = (c.num_ppo_epochs * n.div_ceil(mb)) as f64;
        let mut acc = Metrics::new();
        let mut last = None;
        for _ in 0..c.num_ppo_epochs {
            for start in (0..n).step_by(mb) {
                let rows: Vec<usize> = (start..(start + mb).min(n)).collect();
                let idx = Tensor::from_vec(rows.iter().map(|&i| i as u32).collect::<Vec<_>>(), rows.len(), &dev)?;
                let sub = r.select(&rows);
                let f = forward(&self.policy, self.value_model.as_ref(), &sub, c.temperature)?;
                let pick = |t: &Tensor| t.contiguous()?.index_select(&idx, 0);
                let pg = ppo_policy_loss(&f.logps, &pick(&old_logps)?, &pick(&adv)?, &f.mask, c.cliprange)?;
                let vf = ppo_value_loss(&f.values, &pick(&old_values)?, &pick(&returns)?, &f.mask, c.cliprange_value)?;
                let loss = (&pg.loss + (&vf.loss * c.vf_coef)?)?;
                let mut s = Metrics::new();
                s.insert("loss/policy_avg".into(), scalar(&pg.loss)?);
                s.insert("loss/value_avg".into(), scalar(&vf.loss)?);
                s.insert("policy/clipfrac_avg".into(), scalar(&pg.clipfrac)?);
                s.insert("policy/approxkl_avg".into(), scalar(&pg.approx_kl)?);
                s.insert("val/clipfrac_avg".into(), scalar(&vf.clipfrac)?);
                let tl = f.logits.dim(1)?;
                let h = entropy_from_logits(&f.logits.detach().narrow(1, 0, tl - 1)?)?;
                s.insert("policy/entropy_avg".into(), scalar(&masked_mean(&h, &f.mask)?)?);
                let ratio = (f.logps.detach() - pick(&old_logps)?)?.exp()?;
                s.insert("val/ratio".into(), scalar(&masked_mean(&ratio, &f.mask)?)?);
                s.insert("loss".into(), scalar(&loss)?);
                self.opt.accumulate(loss.backward()?)?;
                last = Some(self.opt.step_within_update()?);
                add_mean(&mut acc, s, updates);
            }
        }
        // One schedule step per rollout batch, as TRL: the run's steps are the schedule's length.
        self.opt.advance_schedule();
        m.extend(acc);
        self.kl_ctl.update(mean_kl, n);
        m.insert("objective/kl_coef".into(), beta);
        if let Some(s) = last {
            m.insert("grad_norm".into(), s.grad_norm);
            m.insert("learning_rate".into(), s.learning_rate);
        }
        m.insert("num_tokens".into(), self.num_tokens);
        Ok(m)
    }

    /// Samples and scores without an update (`eval_*` metrics).
    pub fn evaluate(&mut self, prompts: &[Vec<u32>]) -> Result<Metrics> {
        let mut m = Metrics::new();
        let (r, scores) = self.sample(prompts, &mut m)?;
        completion_metrics(&r, &mut m);
        let mean = mean_reward(&scores);
        m.insert("objective/scores".into(), mean);
        m.insert("reward".into(), mean);
        Ok(m)
    }
}

impl crate::run::Trainer for PpoTrainer {
    type Batch = Vec<Vec<u32>>;
    /// Micro-batches are joined into one rollout (PPO steps per mini-batch, not per micro-batch).
    fn train_step(&mut self, micro_batches: &[Vec<Vec<u32>>]) -> Result<Metrics> {
        PpoTrainer::train_step(self, &micro_batches.concat())
    }
    fn evaluate(&mut self, batch: &Vec<Vec<u32>>) -> Result<Metrics> {
        PpoTrainer::evaluate(self, batch)
    }
    fn model(&self) -> &Model {
        &self.policy
    }
    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.opt
    }
    fn num_tokens(&mut self) -> &mut f64 {
        &mut self.num_tokens
    }
    fn state(&self) -> serde_json::Value {
        // The coefficient also as raw bits: a JSON float need not parse back to the same f64.
        let mut s = serde_json::json!({"generations": self.generations, "kl_ctl": self.kl_ctl, "kl_coef_bits": self.kl_ctl.value().to_bits()});
        if let Some(c) = &self.pf_choice {
            s["pf_choice"] = c.to_json();
        }
        s
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.generations = state["generations"].as_u64().unwrap_or(0);
        if let Some(k) = state.get("kl_ctl") {
            self.kl_ctl = serde_json::from_value(k.clone()).map_err(|e| TrainError::State(format!("kl_ctl: {e}")))?;
        }
        if let Some(c) = state.get("pf_choice") {
            let choice = FilterChoice::from_json(c)?;
            self.cfg.pf_filter = choice.chosen;
            self.pf_choice = Some(choice);
        }
        if let Some(bits) = state["kl_coef_bits"].as_u64() {
            let exact = f64::from_bits(bits);
            match &mut self.kl_ctl {
                KlController::Fixed { value } | KlController::Adaptive { value, .. } => *value = exact,
            }
        }
        Ok(())
    }
    fn samples(&self) -> Vec<Sample> {
        self.last_samples.clone()
    }
}
