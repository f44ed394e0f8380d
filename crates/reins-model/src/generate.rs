//! Batched sampling with a KV cache: the hot loop of every online RLHF method.
//!
//! Prompts are left-padded; positions come from the mask (`cumsum(mask) - 1`), as in HF
//! `generate`. Each step runs the detached model on one new token per row and samples with
//! temperature / top-k / top-p / min-p from a seeded RNG, recording the log-probability of
//! each sampled token so RL methods need no second pass for the behaviour policy.
//!
//! Every row draws from its own random stream, named by a seed and a row number
//! ([`row_rng`]): row `i` of a call with seed `s` is stream `(s, i)`. So a row's tokens do not
//! depend on which other rows share its batch: a data-parallel rank sampling rows `8..16` of a
//! batch ([`generate_streams`] with streams `(s, 8)…(s, 15)`) gets what one process sampling all
//! sixteen gets, and a server can batch requests with different seeds together.

use std::collections::HashMap;

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::kv_cache::{LayerCache, Past};
use crate::model::Model;
use crate::nn;

/// Sampling settings; names and defaults as HF's `GenerationConfig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// New tokens per row at most (default 64).
    pub max_new_tokens: usize,
    /// Sample (`true`) or take the argmax (`false`, greedy). Default true.
    pub do_sample: bool,
    /// Logits are divided by this before sampling (default 1.0).
    pub temperature: f64,
    /// Keep the k most likely tokens; 0 disables (default 0).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (default 1.0 = off).
    pub top_p: f64,
    /// Drop tokens less likely than `min_p ×` the top token's probability (default 0 = off).
    pub min_p: f64,
    /// RNG seed: the same seed gives the same tokens (default 0).
    pub seed: u64,
    /// Stop a row when it emits one of the model's EOS tokens (default true).
    pub stop_on_eos: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            max_new_tokens: 64,
            do_sample: true,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
            stop_on_eos: true,
        }
    }
}

impl SamplingConfig {
    pub fn greedy(max_new_tokens: usize) -> Self {
        SamplingConfig { max_new_tokens, do_sample: false, ..Default::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, m: &str| Err(ModelError::config(k, m.to_string()));
        if self.do_sample && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("temperature", "must be > 0 when sampling (use do_sample = false for greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("min_p", "must be in [0, 1)");
        }
        Ok(())
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Eos,
    Stop,
    Length,
}

/// The result of [`generate`]: per row, the new tokens (including a final EOS) and the
/// log-probability of each under the sampling distribution (logits / temperature).
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<Vec<u32>>,
    pub logprobs: Vec<Vec<f32>>,
    pub finish: Vec<Finish>,
}

/// Decides from a row index and its new tokens whether the row is done.
pub type StopFn<'a> = dyn Fn(usize, &[u32]) -> bool + 'a;

/// Extra per-call hooks: a stop test on a row's new tokens (e.g. stop strings, checked after
/// each token) and a callback for streaming.
#[derive(Default)]
pub struct Hooks<'a> {
    pub stop: Option<&'a StopFn<'a>>,
    pub on_token: Option<&'a mut dyn FnMut(usize, u32)>,
}

/// Samples continuations of `prompts` (token ids, unpadded) as one batch; row `i` draws from
/// stream `(cfg.seed, i)`.
pub fn generate(model: &Model, prompts: &[Vec<u32>], cfg: &SamplingConfig, hooks: Hooks) -> Result<Generation> {
    generate_mixture(&[(model, 1.0)], prompts, cfg, hooks)
}

/// [`generate`] with each row's random stream given: `streams[i] = (seed, row)` for prompt `i`
/// (`cfg.seed` is not used).
pub fn generate_streams(
    model: &Model,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    streams: &[(u64, u64)],
    hooks: Hooks,
) -> Result<Generation> {
    if streams.len() != prompts.len() {
        return Err(ModelError::Usage(format!(
            "{} random streams for {} prompts: give one per prompt",
            streams.len(),
            prompts.len()
        )));
    }
    sample(&[(model, 1.0)], prompts, cfg, streams, hooks)
}

/// The random stream of sampled row `row` under `seed`: independent of every other row's.
pub fn row_rng(seed: u64, row: u64) -> rand::rngs::StdRng {
    // splitmix64's finaliser spreads (seed, row) over the 64-bit seed space.
    let mut z = seed ^ row.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    rand::rngs::StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Samples from the geometric mixture of `models`: at each step the logits are
/// `Σ_i w_i · z_i` over the models' own next-token logits (each model keeps its own KV cache),
/// then temperature and the warpers apply as in [`generate`]. Nash-MD's opponent
/// `π^β ∝ π_θ^{1−β} · π_ref^β` is `[(policy, 1 − β), (reference, β)]` (TRL's
/// `GeometricMixtureWrapper`: `log_softmax(β·z_ref + (1 − β)·z_θ)`, the same distribution).
/// The models must share a vocabulary and EOS/pad ids (the first model's are used); the
/// returned log-probs are under the mixture.
pub fn generate_mixture(
    models: &[(&Model, f64)],
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    hooks: Hooks,
) -> Result<Generation> {
    let streams: Vec<(u64, u64)> = (0..prompts.len() as u64).map(|i| (cfg.seed, i)).collect();
    sample(models, prompts, cfg, &streams, hooks)
}

/// Samples the rows in parts, one per thread, when the CPU has several threads and no hook
/// needs the rows in order: every row has its own random stream, so a part samples exactly
/// what its rows would in one batch. A decoding step is a chain of small ops; run as one
/// batch, each op is a fork-join across the threads, and between ops they wait for each other.
/// In parts, each thread runs its own chain and reads the weights (in cache) on its own.
fn sample(
    models: &[(&Model, f64)],
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    streams: &[(u64, u64)],
    hooks: Hooks,
) -> Result<Generation> {
    let on_cpu = models.iter().all(|(m, _)| m.device().is_cpu());
    let parts = rayon::current_num_threads().min(prompts.len() / MIN_PART_ROWS);
    if !on_cpu || parts < 2 || hooks.stop.is_some() || hooks.on_token.is_some() || !split_decoding() {
        return sample_batch(models, prompts, cfg, streams, hooks);
    }
    sample_in_parts(models, prompts, cfg, streams, parts)
}

/// The rows in `parts` contiguous parts, sampled in parallel, their outputs in row order.
fn sample_in_parts(
    models: &[(&Model, f64)],
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    streams: &[(u64, u64)],
    parts: usize,
) -> Result<Generation> {
    let size = prompts.len().div_ceil(parts.max(1)).max(1);
    let chunks: Vec<_> = prompts.chunks(size).zip(streams.chunks(size)).collect();
    let outs: Vec<Result<Generation>> = chunks
        .into_par_iter()
        .map(|(prompts, streams)| sample_batch(models, prompts, cfg, streams, Hooks::default()))
        .collect();
    let mut all = Generation { tokens: vec![], logprobs: vec![], finish: vec![] };
    for out in outs {
        let out = out?;
        all.tokens.extend(out.tokens);
        all.logprobs.extend(out.logprobs);
        all.finish.extend(out.finish);
    }
    Ok(all)
}

/// Rows a part needs at least for sampling to be split.
const MIN_PART_ROWS: usize = 2;

/// Whether sampling may split rows across threads (`REINS_SPLIT_DECODING=0` turns it off).
fn split_decoding() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("REINS_SPLIT_DECODING").map_or(true, |v| v != "0"))
}

/// Samples all rows as one batch.
fn sample_batch(
    models: &[(&Model, f64)],
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    streams: &[(u64, u64)],
    mut hooks: Hooks,
) -> Result<Generation> {
    cfg.validate()?;
    let Some(&(first, _)) = models.first() else {
        return Err(ModelError::Usage("generate_mixture needs at least one model".into()));
    };
    if let Some((m, _)) = models.iter().find(|(m, _)| m.config.vocab_size != first.config.vocab_size) {
        return Err(ModelError::Usage(format!(
            "a geometric mixture needs one vocabulary: {} vs {} tokens",
            m.config.vocab_size, first.config.vocab_size
        )));
    }
    if let Some((_, w)) = models.iter().find(|(_, w)| !w.is_finite()) {
        return Err(ModelError::Usage(format!("mixture weight {w} is not a finite number")));
    }
    if prompts.is_empty() {
        return Ok(Generation { tokens: vec![], logprobs: vec![], finish: vec![] });
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(ModelError::Usage("every prompt needs at least one token".into()));
    }
    let models: Vec<(Model, f64)> = models.iter().map(|(m, w)| (m.detached(), *w)).collect();
    let dev = first.device().clone();
    let c = &first.config;
    let pad = c.pad_token_id.or(c.eos_token_ids.first().copied()).unwrap_or(0);
    let b = prompts.len();
    let tp = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = tp + cfg.max_new_tokens;
    if capacity > c.max_position_embeddings && matches!(c.arch, crate::config::Arch::Gpt2) {
        return Err(ModelError::Usage(format!(
            "prompt ({tp}) + max_new_tokens ({}) exceeds GPT-2's {} positions",
            cfg.max_new_tokens, c.max_position_embeddings
        )));
    }
    // Left padding.
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| [vec![pad; tp - p.len()], p.clone()].concat()).collect();
    let mut mask: Vec<Vec<u8>> =
        prompts.iter().map(|p| [vec![0u8; tp - p.len()], vec![1u8; p.len()]].concat()).collect();
    let positions = nn::positions_from_mask(&mask);
    let mut next_pos: Vec<u32> = positions.iter().map(|r| r[tp - 1] + 1).collect();
    // Rows with the same prompt (the samples of a GRPO group) share one prefill: the distinct
    // prompts run once, and each row's cache and first logits are copies of its prompt's.
    let (firsts, prompt_of) = distinct_rows(&ids);
    let mut caches: Vec<Vec<LayerCache>> = models
        .iter()
        .map(|(m, _)| {
            let c = &m.config;
            (0..c.num_hidden_layers)
                .map(|_| LayerCache::new(firsts.len(), c.num_key_value_heads, capacity, c.head_dim, &dev))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;

    let mut rngs: Vec<rand::rngs::StdRng> = streams.iter().map(|&(seed, row)| row_rng(seed, row)).collect();
    let mut out = Generation { tokens: vec![vec![]; b], logprobs: vec![vec![]; b], finish: vec![Finish::Length; b] };
    let mut done = vec![false; b];

    let (pre_positions, pre_mask) = (rows_at(&positions, &firsts), rows_at(&mask, &firsts));
    let input = nn::ids_tensor(&rows_at(&ids, &firsts), &dev)?;
    let mut last = Vec::with_capacity(models.len());
    for ((m, _), cache) in models.iter().zip(caches.iter_mut()) {
        last.push(m.forward_hidden(&input, &pre_positions, &pre_mask, Past::Cache(cache))?.narrow(1, tp - 1, 1)?);
    }
    if firsts.len() < b {
        let index = Tensor::from_vec(prompt_of, b, &dev)?;
        for cache in caches.iter_mut() {
            *cache = cache.iter().map(|l| l.rows(&index)).collect::<Result<_>>()?;
        }
        for l in last.iter_mut() {
            *l = l.contiguous()?.index_select(&index, 0)?;
        }
    }
    for _step in 0..cfg.max_new_tokens {
        let logits: Vec<Vec<f32>> = mixed_logits(&models, &last)?.squeeze(1)?.to_vec2()?;
        let mut step_ids = Vec::with_capacity(b);
        for (r, row) in logits.iter().enumerate() {
            if done[r] {
                step_ids.push(pad);
                continue;
            }
            let (tok, lp) = pick(row, cfg, &mut rngs[r]);
            out.tokens[r].push(tok);
            out.logprobs[r].push(lp);
            if let Some(f) = hooks.on_token.as_deref_mut() {
                f(r, tok);
            }
            if cfg.stop_on_eos && c.eos_token_ids.contains(&tok) {
                done[r] = true;
                out.finish[r] = Finish::Eos;
            } else if hooks.stop.is_some_and(|s| s(r, &out.tokens[r])) {
                done[r] = true;
                out.finish[r] = Finish::Stop;
            }
            step_ids.push(tok);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        for row in mask.iter_mut() {
            row.push(1);
        }
        let pos: Vec<Vec<u32>> = next_pos.iter().map(|&p| vec![p]).collect();
        next_pos.iter_mut().for_each(|p| *p += 1);
        let step = Tensor::from_vec(step_ids, (b, 1), &dev)?;
        for (((m, _), cache), l) in models.iter().zip(caches.iter_mut()).zip(last.iter_mut()) {
            *l = m.forward_hidden(&step, &pos, &mask, Past::Cache(cache))?;
        }
    }
    Ok(out)
}

/// The rows of `rows` at `at`, in that order.
fn rows_at<T: Clone>(rows: &[T], at: &[usize]) -> Vec<T> {
    at.iter().map(|&i| rows[i].clone()).collect()
}

/// The first row of each distinct prompt, and for every row the index of its prompt among them.
fn distinct_rows(ids: &[Vec<u32>]) -> (Vec<usize>, Vec<u32>) {
    let mut seen: HashMap<&[u32], u32> = HashMap::new();
    let mut firsts = Vec::new();
    let prompt_of = ids
        .iter()
        .enumerate()
        .map(|(r, row)| {
            *seen.entry(row.as_slice()).or_insert_with(|| {
                firsts.push(r);
                (firsts.len() - 1) as u32
            })
        })
        .collect();
    (firsts, prompt_of)
}

/// `Σ_i w_i · z_i` of the models' next-token logits; one model of weight 1 is its logits as
/// they are.
fn mixed_logits(models: &[(Model, f64)], last: &[Tensor]) -> Result<Tensor> {
    if let [(m, w)] = models {
        if *w == 1.0 {
            return m.lm_logits(&last[0]);
        }
    }
    let mut acc: Option<Tensor> = None;
    for ((m, w), h) in models.iter().zip(last) {
        let z = (m.lm_logits(h)?.to_dtype(candle_core::DType::F32)? * *w)?;
        acc = Some(match acc {
            None => z,
            Some(a) => (a + z)?,
        });
    }
    acc.ok_or_else(|| ModelError::Usage("generate_mixture needs at least one model".into()))
}

/// Picks one token from a row of logits; returns it with its log-probability under
/// `softmax(logits / temperature)` (greedy: under `softmax(logits)`).
fn pick(logits: &[f32], cfg: &SamplingConfig, rng: &mut impl Rng) -> (u32, f32) {
    let t = if cfg.do_sample { cfg.temperature as f32 } else { 1.0 };
    let scaled: Vec<f32> = logits.iter().map(|x| x / t).collect();
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + scaled.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
    if !cfg.do_sample {
        // First maximum, as torch.argmax.
        let (i, _) = scaled
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best });
        return (i as u32, scaled[i] - lse);
    }
    if cfg.top_k == 0 && cfg.top_p >= 1.0 && cfg.min_p <= 0.0 {
        // Plain sampling: inverse CDF over the unsorted distribution, no sort needed.
        let mut u = rng.random::<f32>();
        let mut chosen = scaled.len() - 1;
        for (i, &x) in scaled.iter().enumerate() {
            let p = (x - lse).exp();
            if u < p {
                chosen = i;
                break;
            }
            u -= p;
        }
        return (chosen as u32, scaled[chosen] - lse);
    }
    // Warpers in HF's order: top-k, then top-p, then min-p, on probabilities.
    let mut order: Vec<usize> = (0..scaled.len()).collect();
    order.sort_unstable_by(|&a, &b| scaled[b].total_cmp(&scaled[a]).then(a.cmp(&b)));
    let probs: Vec<f32> = order.iter().map(|&i| (scaled[i] - lse).exp()).collect();
    let mut keep = probs.len();
    if cfg.top_k > 0 {
        keep = keep.min(cfg.top_k);
    }
    if cfg.top_p < 1.0 {
        // Smallest prefix whose mass reaches top_p (at least one token).
        let mut cum = 0.0f32;
        let mut n = 0;
        for &p in &probs[..keep] {
            cum += p;
            n += 1;
            if cum >= cfg.top_p as f32 {
                break;
            }
        }
        keep = n.max(1);
    }
    if cfg.min_p > 0.0 {
        let floor = probs[0] * cfg.min_p as f32;
        keep = probs[..keep].iter().take_while(|&&p| p >= floor).count().max(1);
    }
    let total: f32 = probs[..keep].iter().sum();
    let mut u = rng.random::<f32>() * total;
    let mut chosen = order[keep - 1];
    for (j, &p) in probs[..keep].iter().enumerate() {
        if u < p {
            chosen = order[j];
            break;
        }
        u -= p;
    }
    (chosen as u32, scaled[chosen] - lse)
}

/// Log-probs `[B, T-1]` of a padded batch under `model`, no graph (a detached scoring pass).
pub fn score_logps(model: &Model, batch: &crate::model::Batch) -> Result<Tensor> {
    let m = model.detached();
    let logits = m.logits(batch)?;
    let ids = nn::ids_tensor(&batch.ids, m.device())?;
    let mask = nn::mask_tensor(&batch.mask, m.device())?;
    crate::logprobs::token_logps(&logits, &ids, &mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keep_at_least_the_top_token() {
        let logits = vec![5.0, 1.0, 0.5, -3.0];
        let cfg = SamplingConfig { top_k: 1, ..Default::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(pick(&logits, &cfg, &mut rng).0, 0);
        }
        let cfg = SamplingConfig { top_p: 1e-6, ..Default::default() };
        assert_eq!(pick(&logits, &cfg, &mut rng).0, 0);
        let cfg = SamplingConfig { min_p: 0.5, ..Default::default() };
        assert_eq!(pick(&logits, &cfg, &mut rng).0, 0);
    }

    #[test]
    fn logprob_matches_softmax_over_temperature() {
        let logits = vec![2.0f32, 1.0, 0.0];
        let cfg = SamplingConfig { temperature: 2.0, ..Default::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (tok, lp) = pick(&logits, &cfg, &mut rng);
        let z: f32 = logits.iter().map(|x| (x / 2.0).exp()).sum();
        assert!((lp - ((logits[tok as usize] / 2.0).exp() / z).ln()).abs() < 1e-6);
    }

    #[test]
    fn rows_sampled_in_parts_equal_one_batch() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models/llama");
        let m = Model::load(&dir, &candle_core::Device::Cpu, &Default::default()).unwrap();
        // Prompts of different lengths (different left padding per part), two shared.
        let prompts = vec![vec![5u32, 17, 99], vec![44, 45], vec![5, 17, 99], vec![7, 8, 9, 10, 11], vec![3]];
        let streams: Vec<(u64, u64)> = (0..5).map(|r| (9, r)).collect();
        let cfg = SamplingConfig { max_new_tokens: 10, top_k: 50, stop_on_eos: false, ..Default::default() };
        let models = [(&m, 1.0)];
        let one = sample_batch(&models, &prompts, &cfg, &streams, Hooks::default()).unwrap();
        for parts in [2, 3, 5] {
            let split = sample_in_parts(&models, &prompts, &cfg, &streams, parts).unwrap();
            assert_eq!(split.tokens, one.tokens, "{parts} parts");
            assert_eq!(split.finish, one.finish, "{parts} parts");
            for (a, b) in split.logprobs.iter().flatten().zip(one.logprobs.iter().flatten()) {
                assert!((a - b).abs() < 1e-5, "{parts} parts: {a} vs {b}");
            }
        }
    }

    #[test]
    fn sampling_frequencies_follow_probabilities() {
        let logits = vec![0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let cfg = SamplingConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 20_000;
        let ones = (0..n).filter(|_| pick(&logits, &cfg, &mut rng).0 == 1).count();
        let f = ones as f64 / n as f64;
        assert!((f - 0.75).abs() < 0.015, "{f}");
    }
}
