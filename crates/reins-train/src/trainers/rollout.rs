//! Rollouts: what every online trainer (GRPO, RLOO, PPO, ReMax, online and iterative DPO)
//! does before its loss. Sample completions of prompts from the policy (or take them from a
//! [`CompletionSource`]), lay them out as right-padded `prompt ++ completion` rows with their
//! masks ([`Rollout`]), score them with a reward, and compute their per-token log-probs under
//! the policy (with graph) or the reference (without).

use candle_core::{DType, Device, Tensor, D};
use reins_model::generate::{generate_streams, Finish, Generation, Hooks, SamplingConfig};
use reins_model::logprobs::{masked_token_logps, masked_token_logps_and_logits, token_logps};
use reins_model::{nn, Batch, Model};

use super::metrics::scalar;
use super::reference::Reference;
use crate::losses::ppo::entropy_from_logits;
use crate::rewards::RewardSource;
use crate::rl::advantages::masked_mean;
use crate::{Result, TrainError};
use reins_model::kernels::row_stats::row_stats;

/// One generation batch: every prompt repeated `num_generations` times (contiguous groups),
/// its completions, and the right-padded `prompt ++ completion` rows the loss runs on.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// `[N·G]` prompt ids (repeated).
    pub prompts: Vec<Vec<u32>>,
    /// `[N·G]` sampled completions (with the EOS when one was emitted).
    pub completions: Vec<Vec<u32>>,
    /// Why each completion stopped.
    pub finish: Vec<Finish>,
    /// The sampler's log-prob of each completion token, under `softmax(logits / temperature)`.
    pub sampler_logps: Vec<Vec<f32>>,
    /// `[N·G][T]` right-padded rows, attention mask and completion mask (1 on completion tokens).
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    pub completion_mask: Vec<Vec<u8>>,
}

impl Rollout {
    /// Completion lengths in tokens.
    pub fn lengths(&self) -> Vec<usize> {
        self.completions.iter().map(Vec::len).collect()
    }

    /// Completion tokens that count in the loss.
    pub fn num_loss_tokens(&self) -> f64 {
        self.completion_mask.iter().flatten().map(|&m| m as f64).sum()
    }

    /// Prompt and completion tokens of every row (TRL's `num_tokens` counts these).
    pub fn num_tokens(&self) -> f64 {
        super::metrics::attended_tokens(&self.attention_mask)
    }

    /// Rows `rows` of the rollout, in that order (padding width unchanged).
    pub fn select(&self, rows: &[usize]) -> Rollout {
        fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
            rows.iter().map(|&i| v[i].clone()).collect()
        }
        Rollout {
            prompts: pick(&self.prompts, rows),
            completions: pick(&self.completions, rows),
            finish: pick(&self.finish, rows),
            sampler_logps: pick(&self.sampler_logps, rows),
            input_ids: pick(&self.input_ids, rows),
            attention_mask: pick(&self.attention_mask, rows),
            completion_mask: pick(&self.completion_mask, rows),
        }
    }
}

/// Where an online trainer's completions come from when not from its own sampler (TRL's
/// `rollout_func`): an external generator, or recorded rollouts replayed so that a parity
/// check trains on exactly the completions the reference stack trained on.
pub trait CompletionSource {
    /// One completion per row of `prompts` (every prompt already repeated `num_generations`
    /// times, groups contiguous), ending in an EOS when one stopped it; `generation` counts the
    /// generation batches sampled before this one.
    fn complete(&mut self, prompts: &[Vec<u32>], generation: u64) -> Result<Vec<Vec<u32>>>;

    /// Called before each [`CompletionSource::complete`] with the policy as it is now and the
    /// sampler settings the in-process rollout would use (a server pushes the weights and
    /// samples with the same settings). Default: nothing.
    fn sync(&mut self, _policy: &Model, _sampling: &SamplingConfig) -> Result<()> {
        Ok(())
    }

    /// The sampler's log-prob of each token of the last [`CompletionSource::complete`]'s
    /// completions, where the source reports them (an inference server does). Default none.
    fn logprobs(&mut self) -> Option<Vec<Vec<f32>>> {
        None
    }

    /// Starts sampling `prompts` as generation `generation` with `sampling` in the background,
    /// on the weights the last [`CompletionSource::sync`] pushed; a later `complete` of the same
    /// generation returns its result. Returns false where the source cannot (the default):
    /// `complete` then samples when it is called.
    fn start(&mut self, _prompts: &[Vec<u32>], _generation: u64, _sampling: &SamplingConfig) -> Result<bool> {
        Ok(false)
    }
}

/// [`rollout`], or the completions of `source` after pushing it the policy as it is now
/// ([`CompletionSource::sync`]), laid out by [`rollout_of_source`].
pub fn rollout_from(
    source: Option<&mut (dyn CompletionSource + '_)>,
    generation: u64,
    policy: &Model,
    prompts: &[Vec<u32>],
    num_generations: usize,
    sampling: &SamplingConfig,
    mask_truncated: bool,
) -> Result<Rollout> {
    let Some(source) = source else {
        return rollout(policy, prompts, num_generations, sampling, mask_truncated);
    };
    source.sync(policy, sampling)?;
    rollout_of_source(source, generation, policy, prompts, num_generations, mask_truncated)
}

/// Every prompt repeated `num_generations` times, groups contiguous: the rows of a generation batch.
pub fn repeat_prompts(prompts: &[Vec<u32>], num_generations: usize) -> Vec<Vec<u32>> {
    prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), num_generations)).collect()
}

/// The completions of `source` for generation `generation` (without pushing weights) laid out
/// as [`rollout`] lays out its own: a completion ending in one of the policy's EOS ids finished
/// on EOS, any other was cut at `max_new_tokens`; the sampler log-probs are the source's, or
/// empty where it reports none.
pub fn rollout_of_source(
    source: &mut (dyn CompletionSource + '_),
    generation: u64,
    policy: &Model,
    prompts: &[Vec<u32>],
    num_generations: usize,
    mask_truncated: bool,
) -> Result<Rollout> {
    let repeated = repeat_prompts(prompts, num_generations);
    let tokens = source.complete(&repeated, generation)?;
    if tokens.len() != repeated.len() {
        return Err(TrainError::Input(format!(
            "the completion source gave {} completions for {} prompt rows; it must give one per row",
            tokens.len(),
            repeated.len()
        )));
    }
    let eos = &policy.config.eos_token_ids;
    let finish = tokens
        .iter()
        .map(|c| if c.last().is_some_and(|t| eos.contains(t)) { Finish::Eos } else { Finish::Length })
        .collect();
    let logprobs = match source.logprobs() {
        Some(lp) if lp.len() == tokens.len() && lp.iter().zip(&tokens).all(|(l, t)| l.len() == t.len()) => lp,
        Some(_) => {
            return Err(TrainError::Input(
                "the completion source's log-probs do not line up with its completions (one per token)".into(),
            ))
        }
        None => tokens.iter().map(|_| Vec::new()).collect(),
    };
    Ok(layout_generation(policy, repeated, Generation { tokens, logprobs, finish }, mask_truncated))
}

/// Samples `num_generations` completions of every prompt with `policy` (detached weights, so
/// always the latest update) and lays them out for the loss. With `mask_truncated`, rows that
/// hit `max_new_tokens` get an all-zero completion mask.
pub fn rollout(
    policy: &Model,
    prompts: &[Vec<u32>],
    num_generations: usize,
    sampling: &SamplingConfig,
    mask_truncated: bool,
) -> Result<Rollout> {
    let repeated = repeat_prompts(prompts, num_generations);
    // A data-parallel rank's rows are rows `offset..` of the batch over all ranks: their random
    // streams are the ones one process sampling the whole batch would use.
    let offset = crate::parallel::row_offset(repeated.len());
    let streams: Vec<(u64, u64)> = (0..repeated.len() as u64).map(|i| (sampling.seed, offset + i)).collect();
    let g = generate_streams(policy, &repeated, sampling, &streams, Hooks::default())?;
    Ok(layout_generation(policy, repeated, g, mask_truncated))
}

/// Right-padded `prompt ++ completion` rows and masks of a generation batch.
pub(crate) fn layout_generation(
    policy: &Model,
    repeated: Vec<Vec<u32>>,
    g: Generation,
    mask_truncated: bool,
) -> Rollout {
    let c = &policy.config;
    let pad = c.pad_token_id.or(c.eos_token_ids.first().copied()).unwrap_or(0);
    let t = repeated.iter().zip(&g.tokens).map(|(p, c)| p.len() + c.len()).max().unwrap_or(0);
    let (mut ids, mut am, mut cm) = (vec![], vec![], vec![]);
    for ((p, comp), fin) in repeated.iter().zip(&g.tokens).zip(&g.finish) {
        let n = p.len() + comp.len();
        let keep = !(mask_truncated && *fin == Finish::Length);
        ids.push([p.as_slice(), comp.as_slice(), vec![pad; t - n].as_slice()].concat());
        am.push([vec![1u8; n], vec![0u8; t - n]].concat());
        cm.push([vec![0u8; p.len()], vec![keep as u8; comp.len()], vec![0u8; t - n]].concat());
    }
    Rollout {
        prompts: repeated,
        completions: g.tokens,
        finish: g.finish,
        sampler_logps: g.logprobs,
        input_ids: ids,
        attention_mask: am,
        completion_mask: cm,
    }
}

/// Scores a rollout's completions, subtracting `missing_eos_penalty` from those without an EOS.
pub fn score_rollout(reward: &dyn RewardSource, r: &Rollout, missing_eos_penalty: Option<f32>) -> Result<Vec<f32>> {
    let mut scores = reward.score(&r.prompts, &r.completions)?;
    if let Some(p) = missing_eos_penalty {
        for (s, f) in scores.iter_mut().zip(&r.finish) {
            if *f != Finish::Eos {
                *s -= p;
            }
        }
    }
    Ok(scores)
}

/// The sampler's log-probs `[N, T-1]` aligned with the completion log-probs (zero elsewhere),
/// or `None` when the rollout has none (a source that reports no log-probs).
pub fn sampler_logps_tensor(r: &Rollout, device: &Device) -> Result<Option<Tensor>> {
    if r.sampler_logps.iter().zip(&r.completions).any(|(l, c)| l.len() != c.len()) {
        return Ok(None);
    }
    token_rewards_tensor(r, &r.sampler_logps, device).map(Some)
}

/// Per-token rewards `[N, T-1]` aligned with the completion log-probs (zero elsewhere).
pub fn token_rewards_tensor(r: &Rollout, per_token: &[Vec<f32>], device: &Device) -> Result<Tensor> {
    let t = r.input_ids.first().map_or(1, Vec::len).max(1) - 1;
    let mut flat = vec![0f32; r.prompts.len() * t];
    for (i, (p, vals)) in r.prompts.iter().zip(per_token).enumerate() {
        for (j, v) in vals.iter().take(r.completions[i].len()).enumerate() {
            // completion token j sits at index p.len() + j, predicted from position p.len() + j − 1
            flat[i * t + p.len() + j - 1] = *v;
        }
    }
    Ok(Tensor::from_vec(flat, (r.prompts.len(), t), device)?)
}

/// Per-token log-probs of a rollout's completion tokens under `softmax(logits / temperature)`,
/// with graph when `model` is trainable: `(logps [N, T-1], mask [N, T-1], logits [N, T, V])`,
/// `logps` zero outside the completion.
pub fn completion_token_logps(model: &Model, r: &Rollout, temperature: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let dev = model.device();
    let batch = Batch::new(r.input_ids.clone(), r.attention_mask.clone())?;
    let mut logits = model.logits(&batch)?;
    if temperature != 1.0 {
        logits = (logits / temperature)?;
    }
    let ids = nn::ids_tensor(&r.input_ids, dev)?;
    let cm = nn::mask_tensor(&r.completion_mask, dev)?;
    let logps = token_logps(&logits, &ids, &cm)?;
    let t = cm.dim(1)?;
    Ok((logps, cm.narrow(1, 1, t - 1)?, logits))
}

/// As [`completion_token_logps`], with the LM head run only on completion positions:
/// `(logps [N, T-1], mask [N, T-1], entropy)`, the entropy (nats) of the next-token
/// distributions averaged over completion tokens (no graph), as [`completion_entropy`].
pub fn completion_only_token_logps(model: &Model, r: &Rollout, temperature: f64) -> Result<(Tensor, Tensor, f64)> {
    let batch = Batch::new(r.input_ids.clone(), r.attention_mask.clone())?;
    let (logps, logits) = masked_token_logps_and_logits(model, &batch, &r.completion_mask, temperature)?;
    let cm = nn::mask_tensor(&r.completion_mask, model.device())?;
    let t = cm.dim(1)?;
    let entropy = match logits.dim(0)? {
        0 => 0.0,
        n => row_stats(&logits)?.entropy.iter().map(|&h| h as f64).sum::<f64>() / n as f64,
    };
    Ok((logps, cm.narrow(1, 1, t - 1)?, entropy))
}

/// Mean entropy (nats) of the next-token distributions at completion positions; no graph.
pub fn completion_entropy(logits: &Tensor, mask: &Tensor) -> Result<f64> {
    let t = logits.dim(1)?;
    let h = entropy_from_logits(&logits.detach().narrow(1, 0, t - 1)?)?;
    scalar(&masked_mean(&h, mask)?)
}

/// Log-probs of the rollout under the reference (detached), for the KL term.
pub fn reference_logps(policy: &Model, reference: &Reference, r: &Rollout, temperature: f64) -> Result<Tensor> {
    let m = reference.model(policy)?;
    let batch = Batch::new(r.input_ids.clone(), r.attention_mask.clone())?;
    Ok(masked_token_logps(&m, &batch, &r.completion_mask, temperature)?.detach())
}

/// Sequence-level sums `[N]` of per-token values `[N, T]` over the mask (a sequence's KL,
/// its summed token rewards).
pub(crate) fn masked_row_sums(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok((x * mask.to_dtype(x.dtype())?)?.sum(D::Minus1)?.to_dtype(DType::F32)?)
}
