//! Macro actions for PPO: MA-RLHF (Chai et al., "MA-RLHF: Reinforcement Learning from Human
//! Feedback with Macro Actions", ICLR 2025, arXiv:2410.02743), as its released code
//! (ernie-research/MA-RLHF, `dschat/rlhf/ppo_trainer.py`).
//!
//! A response's tokens are cut into macro actions — consecutive spans — by a termination
//! condition; the **last token is always a macro of its own**, so the reward model's score at
//! the end is not averaged away. Per macro `i` the token rewards and the old values are
//! aggregated with weights `σ_k` (`value_function`): the mean (`equal`, default), the last token
//! (`unit`), or `1/(k+1)` normalised (`position`). GAE then runs over macros,
//!
//! `δ_i = r̄_i + γ·V̄_{i+1} − V̄_i`, `Â_i = δ_i + γλ·Â_{i+1}`, `R̂_i = Â_i + V̄_i`,
//!
//! and every token of macro `i` gets `Â_i` as its advantage and `R̂_i` as its value target; the
//! clipped policy and value losses stay per token. With one-token macros this is PPO's GAE.
//!
//! Termination conditions (the paper's §3.2; parsing-based termination needs a constituency
//! parser of the policy's tokens and is not built):
//! - `fixed`: a new macro every `ngram` tokens;
//! - `randomized`: lengths drawn in a shuffled order from {1, 2, 3, 5, 10}, each `repeat_times`
//!   times; what remains after the list is one macro;
//! - `ppl`: a new macro starts at token `t` when the reference model's perplexity of token
//!   `t + 1` is higher than that of token `t` (official `ppl_selection`).
//!
//! One difference from the official code: its fixed n-gram cut can coincide with the final
//! singleton and leave an empty macro (value and reward 0) in the GAE recursion; here cuts are
//! deduplicated.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// When a macro action ends (official `termination_condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// No macros: every token is its own action (plain PPO). Default.
    #[default]
    None,
    /// Every `ngram` tokens.
    Fixed,
    /// Shuffled lengths from {1, 2, 3, 5, 10}, each `repeat_times` times.
    Randomized,
    /// Where the reference model's per-token perplexity rises.
    Ppl,
}

/// How a macro's token rewards and values are combined (official `value_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MacroAggregation {
    /// The mean over the macro's tokens. Default.
    #[default]
    Equal,
    /// The macro's last token.
    Unit,
    /// Weights `1/(k+1)` for the k-th token, normalised.
    Position,
}

/// The macro-action settings of PPO, under the official code's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacroSpec {
    pub termination: Termination,
    /// `fixed`: tokens per macro (the paper's default 5).
    pub ngram: usize,
    /// `randomized`: how often each length of {1, 2, 3, 5, 10} is used.
    pub repeat_times: usize,
    pub aggregation: MacroAggregation,
}

/// The lengths `randomized` draws from (official `randomized_ngram_selection`).
const RANDOM_LENGTHS: [usize; 5] = [1, 2, 3, 5, 10];

impl MacroSpec {
    pub fn validate(&self) -> Result<()> {
        if self.termination == Termination::Fixed && self.ngram == 0 {
            return Err(TrainError::Config("ngram must be at least 1 (1 is plain PPO; the paper uses 5)".into()));
        }
        if self.termination == Termination::Randomized && self.repeat_times == 0 {
            return Err(TrainError::Config(
                "repeat_times must be at least 1 for termination_condition = \"randomized\"".into(),
            ));
        }
        Ok(())
    }

    /// The first token of each macro of a response of `len` tokens (`starts[0] = 0`, strictly
    /// increasing, `len − 1` last: the final token alone). `ref_logps` are the reference
    /// model's log-probs of the response's tokens (read by `ppl`); `seed` orders `randomized`.
    pub fn starts(&self, len: usize, ref_logps: &[f32], seed: u64) -> Vec<usize> {
        if len == 0 {
            return Vec::new();
        }
        let mut starts = vec![0];
        match self.termination {
            Termination::None => starts.extend(1..len),
            Termination::Fixed => starts.extend((self.ngram..len).step_by(self.ngram)),
            Termination::Randomized => {
                let mut lengths: Vec<usize> =
                    RANDOM_LENGTHS.iter().flat_map(|&n| std::iter::repeat_n(n, self.repeat_times)).collect();
                lengths.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
                let mut at = 0;
                for n in lengths {
                    at += n;
                    if at >= len {
                        break;
                    }
                    starts.push(at);
                }
            }
            Termination::Ppl => {
                // Perplexity exp(−log p) rises exactly where the log-prob falls.
                starts.extend((0..len.saturating_sub(1)).filter(|&t| ref_logps[t + 1] < ref_logps[t]));
            }
        }
        starts.push(len - 1);
        starts.retain(|&s| s < len);
        starts.sort_unstable();
        starts.dedup();
        starts
    }
}

/// `σ`-weighted aggregate of one macro's values.
fn aggregate(xs: &[f32], how: MacroAggregation) -> f64 {
    match how {
        MacroAggregation::Equal => xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64,
        MacroAggregation::Unit => f64::from(xs[xs.len() - 1]),
        MacroAggregation::Position => {
            let w: Vec<f64> = (0..xs.len()).map(|k| 1.0 / (k + 1) as f64).collect();
            let total: f64 = w.iter().sum();
            xs.iter().zip(&w).map(|(&x, w)| f64::from(x) * w).sum::<f64>() / total
        }
    }
}

/// GAE over the macros of one response: `rewards` and `values` per token, `starts` from
/// [`MacroSpec::starts`]. Returns per-token advantages and returns (each token carries its
/// macro's).
pub fn macro_gae(
    rewards: &[f32],
    values: &[f32],
    starts: &[usize],
    how: MacroAggregation,
    gamma: f64,
    lam: f64,
) -> (Vec<f32>, Vec<f32>) {
    let len = rewards.len();
    let spans: Vec<(usize, usize)> =
        starts.iter().enumerate().map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(len))).collect();
    let r: Vec<f64> = spans.iter().map(|&(a, b)| aggregate(&rewards[a..b], how)).collect();
    let v: Vec<f64> = spans.iter().map(|&(a, b)| aggregate(&values[a..b], how)).collect();
    let m = spans.len();
    let (mut adv, mut last) = (vec![0.0; m], 0.0);
    for i in (0..m).rev() {
        let next = if i + 1 < m { v[i + 1] } else { 0.0 };
        last = r[i] + gamma * next - v[i] + gamma * lam * last;
        adv[i] = last;
    }
    let (mut a, mut ret) = (vec![0.0f32; len], vec![0.0f32; len]);
    for (i, &(s, e)) in spans.iter().enumerate() {
        for t in s..e {
            a[t] = adv[i] as f32;
            ret[t] = (adv[i] + v[i]) as f32;
        }
    }
    (a, ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(termination: Termination, ngram: usize) -> MacroSpec {
        MacroSpec { termination, ngram, repeat_times: 1, aggregation: MacroAggregation::Equal }
    }

    #[test]
    fn fixed_cuts_every_n_tokens_and_keep_the_last_token_alone() {
        assert_eq!(spec(Termination::Fixed, 3).starts(8, &[], 0), vec![0, 3, 6, 7]);
        // a cut on the final token is not doubled
        assert_eq!(spec(Termination::Fixed, 3).starts(7, &[], 0), vec![0, 3, 6]);
        assert_eq!(spec(Termination::Fixed, 5).starts(1, &[], 0), vec![0]);
        assert_eq!(spec(Termination::None, 5).starts(4, &[], 0), vec![0, 1, 2, 3]);
        assert_eq!(spec(Termination::Fixed, 1).starts(4, &[], 0), vec![0, 1, 2, 3]);
    }

    #[test]
    fn ppl_starts_a_macro_where_the_next_token_is_less_likely() {
        // log-probs −1, −2 (next less likely → cut at 0), −0.5, −0.7 (cut at 2), −0.1
        let s = spec(Termination::Ppl, 0).starts(5, &[-1.0, -2.0, -0.5, -0.7, -0.1], 0);
        assert_eq!(s, vec![0, 2, 4]);
    }

    #[test]
    fn randomized_lengths_come_from_the_list_and_are_seeded() {
        let sp = MacroSpec {
            termination: Termination::Randomized,
            ngram: 0,
            repeat_times: 2,
            aggregation: MacroAggregation::Equal,
        };
        let a = sp.starts(60, &[], 3);
        assert_eq!(a, sp.starts(60, &[], 3));
        let lens: Vec<usize> = a.windows(2).map(|w| w[1] - w[0]).collect();
        // every length but the remainder and the final singleton is one of the list's
        for l in &lens[..lens.len() - 2] {
            assert!(RANDOM_LENGTHS.contains(l), "{lens:?}");
        }
        assert_eq!(*a.last().unwrap(), 59);
    }

    #[test]
    fn one_token_macros_are_token_gae() {
        let (r, v) = ([0.1f32, -0.2, 0.3, 1.5], [0.5f32, 0.4, 0.2, 0.9]);
        let (gamma, lam) = (0.9, 0.8);
        let (a, ret) = macro_gae(&r, &v, &[0, 1, 2, 3], MacroAggregation::Equal, gamma, lam);
        let mut want = [0.0f64; 4];
        let mut last = 0.0;
        for t in (0..4).rev() {
            let next = if t < 3 { v[t + 1] as f64 } else { 0.0 };
            last = r[t] as f64 + gamma * next - v[t] as f64 + gamma * lam * last;
            want[t] = last;
        }
        for t in 0..4 {
            assert!((a[t] as f64 - want[t]).abs() < 1e-6);
            assert!((ret[t] as f64 - (want[t] + v[t] as f64)).abs() < 1e-6);
        }
    }

    /// Macros {0,1,2}, {3}: equal means r̄ = (0.1, 1.5)… by hand, γ = λ = 1.
    #[test]
    fn macro_gae_by_hand() {
        let (r, v) = ([0.0f32, 0.3, 0.0, 1.5], [0.6f32, 0.3, 0.0, 0.9]);
        let (a, ret) = macro_gae(&r, &v, &[0, 3], MacroAggregation::Equal, 1.0, 1.0);
        // macro 1: r̄ = 1.5, V̄ = 0.9 → Â₁ = 0.6; macro 0: r̄ = 0.1, V̄ = 0.3 → δ₀ = 0.1 + 0.9 − 0.3 = 0.7, Â₀ = 1.3.
        for t in 0..3 {
            assert!((a[t] - 1.3).abs() < 1e-6 && (ret[t] - 1.6).abs() < 1e-6, "{a:?} {ret:?}");
        }
        assert!((a[3] - 0.6).abs() < 1e-6 && (ret[3] - 1.5).abs() < 1e-6);
        // unit takes the last token, position weighs 1, ½, ⅓ (normalised by 11/6)
        let (u, _) = macro_gae(&r, &v, &[0, 3], MacroAggregation::Unit, 1.0, 1.0);
        assert!((u[0] - (0.0 + 0.9 - 0.0 + 0.6)).abs() < 1e-6, "{u:?}");
        let rp = (0.0 + 0.3 / 2.0 + 0.0) / (11.0 / 6.0);
        let vp = (0.6 + 0.3 / 2.0 + 0.0) / (11.0 / 6.0);
        let (p, _) = macro_gae(&r, &v, &[0, 3], MacroAggregation::Position, 1.0, 1.0);
        assert!((p[0] as f64 - (rp + 0.9 - vp + 0.6)).abs() < 1e-6, "{p:?}");
    }
}
