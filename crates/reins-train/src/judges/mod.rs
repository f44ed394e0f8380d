//! Pairwise judges: anything that compares two responses to a prompt — a reward model's score
//! difference, a pairwise preference model, simulated annotators, the policy judging itself.
//! [`Preferences`] hands a trainer either a reward or a judge: online DPO picks chosen/rejected
//! with it (TRL's `OnlineDPOTrainer(judge=…)`), iterative DPO and INPO the best and worst of
//! their samples (a round-robin tournament), Nash-MD its `P(y ≻ y')`.
//!
//! [`SelfJudge`] is the policy judging its own samples (OSP): it reads the model's next-token
//! probabilities of two verdict tokens after a judge prompt, averaged over both orders.
//!
//! A judge reads `T`: `str` for judges of text (annotators, an LLM judge), `[u32]` for judges of
//! token ids, as trainers hold their rollouts (the RL core never decodes; see [`crate::rewards`]).

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::rewards::RewardSource;
use crate::Result;

mod self_judge;
pub use self_judge::{JudgeArgs, JudgeSource, JudgeTemplate, SelfJudge};

/// A judge's verdict on the pair (a, b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// `a` is better.
    A,
    /// `b` is better.
    B,
    /// Equally good.
    Tie,
    /// No answer (a person skipped the pair, both responses are unusable).
    Skip,
}

/// What a judge says about (a, b): its verdict and the probability it gives that `a` is
/// preferred (1 / 0 for a deterministic judge, ½ for a tie).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgment {
    pub preference: Preference,
    pub p_a: f64,
}

impl Judgment {
    /// The verdict a probability `p_a` that `a` is preferred favours (a tie at exactly ½).
    pub fn from_probability(p_a: f64) -> Self {
        let preference = if p_a > 0.5 {
            Preference::A
        } else if p_a < 0.5 {
            Preference::B
        } else {
            Preference::Tie
        };
        Judgment { preference, p_a }
    }

    /// A verdict with the probability a deterministic judge gives it.
    pub fn certain(preference: Preference) -> Self {
        let p_a = match preference {
            Preference::A => 1.0,
            Preference::B => 0.0,
            Preference::Tie | Preference::Skip => 0.5,
        };
        Judgment { preference, p_a }
    }
}

/// Compares two responses to a prompt. `rng` is the judge's own randomness (a noisy annotator,
/// a sampled LLM verdict); deterministic judges ignore it.
pub trait PairwiseJudge<T: ?Sized> {
    fn judge(&self, prompt: &T, a: &T, b: &T, rng: &mut dyn RngCore) -> Result<Judgment>;

    /// Judges many `(prompt, a, b)` triples; a judge that runs a model overrides this to batch
    /// them ([`SelfJudge`]). The default asks [`Self::judge`] once per triple, in order.
    fn judge_many(&self, items: &[(&T, &T, &T)], rng: &mut dyn RngCore) -> Result<Vec<Judgment>> {
        items.iter().map(|(p, a, b)| self.judge(p, a, b, rng)).collect()
    }

    /// Name for metrics and reports.
    fn name(&self) -> &str {
        "judge"
    }
}

/// Where a trainer's preferences come from: a reward's scores (the higher wins; Bradley–Terry
/// `σ(r(a) − r(b))` where a probability is needed), or a pairwise judge (a preference model,
/// annotators, an LLM judge). Online DPO, iterative DPO, INPO and Nash-MD take either.
pub enum Preferences {
    Reward(Box<dyn RewardSource>),
    Judge(Box<dyn PairwiseJudge<[u32]>>),
}

impl From<Box<dyn RewardSource>> for Preferences {
    fn from(r: Box<dyn RewardSource>) -> Self {
        Preferences::Reward(r)
    }
}

impl Preferences {
    /// For each group of `g` consecutive rows (one prompt's samples), the preferred and the
    /// other row: `[best…, worst…]` as [`crate::trainers::iterative_dpo::best_worst_rows`] —
    /// by the reward's scores, or by a round-robin [`tournament`] of the judge (most and
    /// fewest wins, the first on ties). A group whose candidates all tie gives no pair.
    /// Returns the rows and each row's score (the reward, or its tournament wins).
    pub fn best_worst(
        &self,
        prompts: &[Vec<u32>],
        completions: &[Vec<u32>],
        g: usize,
        scores: Option<&[f32]>,
        rng: &mut dyn RngCore,
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        if let (Preferences::Reward(_), Some(s)) = (self, scores) {
            return Ok((crate::trainers::iterative_dpo::best_worst_rows(s, g), s.to_vec()));
        }
        let Preferences::Judge(judge) = self else {
            return Err(crate::TrainError::Input("best_worst: a reward needs the rows' scores".into()));
        };
        let (mut best, mut worst, mut wins) = (vec![], vec![], vec![0f32; completions.len()]);
        for (gi, group) in completions.chunks(g).enumerate() {
            let st = tournament(judge.as_ref(), &prompts[gi * g], group, rng)?;
            for (j, w) in st.wins.iter().enumerate() {
                wins[gi * g + j] = *w as f32;
            }
            if st.wins[st.best] > st.wins[st.worst] {
                best.push(gi * g + st.best);
                worst.push(gi * g + st.worst);
            }
        }
        best.extend(worst);
        Ok((best, wins))
    }
}

/// The outcome of a round-robin [`tournament`].
#[derive(Debug, Clone, PartialEq)]
pub struct Standings {
    /// Index of the candidate with the most wins (the first one on ties).
    pub best: usize,
    /// Index of the candidate with the fewest wins (the first one on ties).
    pub worst: usize,
    /// Per candidate: 1 per win, ½ per tie, 0 per loss or skip.
    pub wins: Vec<f64>,
}

/// Round-robin tournament of `candidates` (responses to `prompt`) under any judge: every pair
/// (i < j) is judged once, in order. For chosen/rejected from K samples (online DPO with a
/// judge, iterative DPO) and graded lists (LiPO).
pub fn tournament<T: ?Sized, S: AsRef<T>>(
    judge: &dyn PairwiseJudge<T>,
    prompt: &T,
    candidates: &[S],
    rng: &mut dyn RngCore,
) -> Result<Standings> {
    let mut wins = vec![0.0; candidates.len()];
    for i in 0..candidates.len() {
        for j in i + 1..candidates.len() {
            match judge.judge(prompt, candidates[i].as_ref(), candidates[j].as_ref(), rng)?.preference {
                Preference::A => wins[i] += 1.0,
                Preference::B => wins[j] += 1.0,
                Preference::Tie => {
                    wins[i] += 0.5;
                    wins[j] += 0.5;
                }
                Preference::Skip => {}
            }
        }
    }
    let best = (0..wins.len()).fold(0, |b, i| if wins[i] > wins[b] { i } else { b });
    let worst = (0..wins.len()).fold(0, |w, i| if wins[i] < wins[w] { i } else { w });
    Ok(Standings { best, worst, wins })
}

/// A reward source as a judge (the reward-model difference): `a` wins when it scores higher,
/// with the Bradley–Terry probability `p_a = σ(r(a) − r(b))`; equal scores tie.
pub struct RewardJudge {
    pub reward: Box<dyn RewardSource>,
}

impl PairwiseJudge<[u32]> for RewardJudge {
    fn judge(&self, prompt: &[u32], a: &[u32], b: &[u32], _rng: &mut dyn RngCore) -> Result<Judgment> {
        let s = self.reward.score(&[prompt.to_vec(), prompt.to_vec()], &[a.to_vec(), b.to_vec()])?;
        let d = f64::from(s[0]) - f64::from(s[1]);
        let preference = match d.partial_cmp(&0.0) {
            Some(std::cmp::Ordering::Greater) => Preference::A,
            Some(std::cmp::Ordering::Less) => Preference::B,
            _ => Preference::Tie,
        };
        Ok(Judgment { preference, p_a: 1.0 / (1.0 + (-d).exp()) })
    }

    fn name(&self) -> &str {
        self.reward.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::RuleReward;
    use rand::SeedableRng;

    /// Prefers the longer text; ties on equal length.
    struct Longer;
    impl PairwiseJudge<str> for Longer {
        fn judge(&self, _p: &str, a: &str, b: &str, _rng: &mut dyn RngCore) -> Result<Judgment> {
            Ok(Judgment::certain(match a.len().cmp(&b.len()) {
                std::cmp::Ordering::Greater => Preference::A,
                std::cmp::Ordering::Less => Preference::B,
                std::cmp::Ordering::Equal => Preference::Tie,
            }))
        }
    }

    #[test]
    fn a_tournament_counts_wins_and_half_ties_and_breaks_ties_to_the_first() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let cands = ["aa", "a", "aaaa", "bb"];
        let s = tournament(&Longer, "p", &cands, &mut rng).unwrap();
        // "aaaa" beats all three; "aa" and "bb" beat "a" and tie each other; "a" wins nothing.
        assert_eq!(s.wins, vec![1.5, 0.0, 3.0, 1.5]);
        assert_eq!((s.best, s.worst), (2, 1));
        let tied = tournament(&Longer, "p", &["x", "y", "z"], &mut rng).unwrap();
        assert_eq!((tied.best, tied.worst, tied.wins), (0, 0, vec![1.0, 1.0, 1.0]));
    }

    #[test]
    fn a_reward_judge_gives_the_bradley_terry_probability_of_the_score_gap() {
        // Reward = completion length: a has 3 tokens, b has 1, gap 2.
        let judge = RewardJudge { reward: Box::new(RuleReward::named("len", |_p, c| c.len() as f32)) };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let j = judge.judge(&[1], &[5, 6, 7], &[5], &mut rng).unwrap();
        assert_eq!(j.preference, Preference::A);
        assert!((j.p_a - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12, "{}", j.p_a);
        let r = judge.judge(&[1], &[5], &[5, 6, 7], &mut rng).unwrap();
        assert_eq!(r.preference, Preference::B);
        assert!((r.p_a + j.p_a - 1.0).abs() < 1e-12, "swapping a and b mirrors the probability");
        let t = judge.judge(&[1], &[5], &[6], &mut rng).unwrap();
        assert_eq!((t.preference, t.p_a), (Preference::Tie, 0.5));
        assert_eq!(judge.name(), "len");
    }
}
