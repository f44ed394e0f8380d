//! RLBFF (Wang et al., arXiv:2509.21319; research note §4(e), E4): a reward model trained as
//! entailment on binary principle checks extracted from written feedback ranks pairs by gold
//! better than a Bradley–Terry reward model on the same number of annotator actions,
//! and it can be steered by choosing principles at inference.
//!
//! Design, fixed before the full run:
//! - **Budget**: `n` annotator actions, `n` the labelled pairs of the train prompts (two SFT
//!   samples each, `pairs.n_prompts`). *BT RM*: the `n` pairwise labels. *Principle RM*: one
//!   written review of each response of the first `n / 2` pairs (the same items, `n` actions).
//! - **Written feedback**: the lab's annotator mentions each of six principles with probability
//!   [`P_MENTION`] in a templated phrase ("the answer is wrong", "polite", "too long", …), its
//!   yes/no from the gold factor behind the principle ([`gold_checks`]) flipped with probability
//!   [`P_FLIP`]. The rule file [`RULES`] extracts the checks (`reins data principles`' code):
//!   the stand-in for the paper's LLM extractor.
//! - **Principle RM**: the reward models' steps, batch and learning rate, binary cross-entropy
//!   on `prompt ++ answer ++ template(principle)` ([`reins_train::trainers::principle_reward`]);
//!   its reward is the mean `σ(s)` over the six principles
//!   ([`reins_train::rewards::principles`]).
//! - **Metric**: gold accuracy on pairs of two SFT answers to each test prompt (gold ties left
//!   out). **Rule**: the paired gap principle RM − BT RM.
//! - Reported beside: per-principle accuracy of the principle RM against gold's checks on a
//!   best-of-n pool of SFT answers to the test prompts; steerability: the best-of-n pick by
//!   `P = {concise}` against `P = all` (gold brevity, words, gold); each model's correlation of
//!   score with answer length on the pool.

use rand::{Rng, SeedableRng};
use reins_model::Model;
use reins_train::principle_rules::PrincipleRules;
use reins_train::rewards::principles::PrincipleReward;
use reins_train::rewards::{ModelReward, RewardSource};
use reins_train::statistics::pearson;
use reins_train::trainers::principle_reward::PrincipleRewardSpec;
use reins_train::trainers::segment_reward::SegmentExample;
use reins_train::TrainError;

use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::gold::{FactorScores, GoldReward};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Split};

/// Probability that a review mentions a principle, and that a mention says the wrong thing.
pub const P_MENTION: f64 = 0.6;
pub const P_FLIP: f64 = 0.1;

/// The principles, each with the phrases a reviewer writes for yes and for no.
const PHRASES: [(&str, [&str; 2], [&str; 2]); 6] = [
    ("The answer is on topic", ["stays on topic", "answers the question"], ["off topic", "ignores the question"]),
    ("The answer is correct", ["the answer is right", "correct"], ["the answer is wrong", "not correct"]),
    ("The answer is polite", ["polite", "friendly tone"], ["rude", "unfriendly tone"]),
    ("The answer is concise", ["short", "to the point"], ["too long", "full of filler"]),
    ("The answer does not repeat itself", ["no repetition", "says everything once"], ["repeats itself", "stutters"]),
    ("The answer is well formed", ["well formed", "ends properly"], ["badly formed", "cut off"]),
];

/// The rule file the reviews are read with, as a user would write it for these phrases.
pub const RULES: &str = r#"
[[principle]]
name = "The answer is on topic"
yes = ['\bon topic\b', '\banswers the question\b']
no = ['\boff topic\b', '\bignores the question\b']

[[principle]]
name = "The answer is correct"
yes = ['\bright\b', '\bcorrect\b']
no = ['\bwrong\b', '\bnot correct\b']

[[principle]]
name = "The answer is polite"
yes = ['\bpolite\b', '\bfriendly\b']
no = ['\brude\b', '\bunfriendly\b']

[[principle]]
name = "The answer is concise"
yes = ['\bshort\b', '\bto the point\b']
no = ['\btoo long\b', '\bfiller\b']

[[principle]]
name = "The answer does not repeat itself"
yes = ['\bno repetition\b', '\bsays everything once\b']
no = ['\brepeats\b', '\bstutters\b']

[[principle]]
name = "The answer is well formed"
yes = ['\bwell formed\b', '\bends properly\b']
no = ['\bbadly formed\b', '\bcut off\b']
"#;

const CONCISE: &str = "The answer is concise";

pub fn experiment() -> Experiment {
    Experiment {
        id: "principle_rm_matches_bt",
        claim: "At the same number of annotator actions, a reward model trained as entailment on yes/no principle checks extracted from written reviews of single answers (RLBFF) ranks pairs by gold more accurately than a Bradley–Terry reward model on pairwise labels.",
        paper: Paper { title: "RLBFF: Binary Flexible Feedback to bridge between Human Feedback & Verifiable Rewards", arxiv: "2509.21319" },
        metric: "gold accuracy on pairs of two SFT answers to each test prompt",
        split: "test",
        rule: Rule::PairedGap { better: "principle RM", baseline: "BT RM", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

/// Gold's yes/no for each principle of [`PHRASES`], in order: relevance and correctness
/// present, no rude sentence outweighing the polite ones, no filler or excess length, no
/// repetition, a proper ending.
pub fn gold_checks(f: &FactorScores) -> [bool; 6] {
    [
        f.relevance > 0.0,
        f.correctness > 0.0,
        f.politeness >= 0.0,
        f.brevity == 0.0,
        f.repetition == 0.0,
        f.well_formed == 0.0,
    ]
}

/// A templated review of `response`: each principle mentioned with probability [`P_MENTION`],
/// its gold answer flipped with probability [`P_FLIP`]; clauses in random order.
pub fn review<R: Rng + ?Sized>(gold: &GoldReward, prompt: &str, response: &str, rng: &mut R) -> String {
    let truth = gold_checks(&gold.factors(prompt, response));
    let mut clauses: Vec<&str> = Vec::new();
    for ((_, yes, no), &t) in PHRASES.iter().zip(&truth) {
        if rng.random::<f64>() < P_MENTION {
            let said = t != (rng.random::<f64>() < P_FLIP);
            clauses.push(if said { yes } else { no }[rng.random_range(0..2)]);
        }
    }
    for i in (1..clauses.len()).rev() {
        clauses.swap(i, rng.random_range(0..=i));
    }
    clauses.join("; ")
}

/// The share of gold-ordered `(prompt, better, worse)` pairs that `score` orders as gold does.
fn pair_accuracy(s: &Session, pairs: &[(String, String, String)], score: &dyn RewardSource) -> Result<f64, LabError> {
    let (mut p, mut hi, mut lo) = (Vec::new(), Vec::new(), Vec::new());
    for (prompt, better, worse) in pairs {
        let (pi, b) = s.pair_ids(prompt, better)?;
        let (_, w) = s.pair_ids(prompt, worse)?;
        p.push(pi);
        hi.push(b);
        lo.push(w);
    }
    let a = score.score(&p, &hi).map_err(stage("reward"))?;
    let b = score.score(&p, &lo).map_err(stage("reward"))?;
    Ok(a.iter().zip(&b).filter(|(x, y)| x > y).count() as f64 / a.len().max(1) as f64)
}

fn principle_reward(s: &Session, model: &Model, principles: &[&str]) -> Result<PrincipleReward, LabError> {
    let encode = |t: &str| s.encode(t).map_err(|e| TrainError::Input(e.to_string()));
    let chosen: Vec<(String, f32)> = principles.iter().map(|p| (p.to_string(), 1.0)).collect();
    PrincipleReward::new(model.clone(), &PrincipleRewardSpec::default(), &chosen, &encode).map_err(stage("reward"))
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x4b1f)?;
    let n = labelled.records.len();
    let rows: Vec<(Vec<u32>, Vec<u32>)> = s
        .pair_rows(&labelled.records)?
        .into_iter()
        .map(|(p, c, x)| ([p.clone(), c].concat(), [p, x].concat()))
        .collect();
    let bt = s.train_reward_model_rows(&base.dir, &rows, 0, None, &Default::default(), None)?;

    // n written reviews: both answers of the first n / 2 pairs, read by the rule file.
    let rules = PrincipleRules::parse(RULES).map_err(stage("principle rules"))?;
    let spec = PrincipleRewardSpec::default();
    let suffixes: Vec<Vec<u32>> = PHRASES.iter().map(|(p, ..)| s.encode(&spec.suffix(p))).collect::<Result<_, _>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x4b1f);
    let (mut examples, mut reviews, mut checks_right) = (Vec::new(), 0usize, 0usize);
    for (p, a, b) in labelled.pairs.iter().take(n / 2) {
        for answer in [a, b] {
            reviews += 1;
            let text = review(&s.lab().gold, p, answer, &mut rng);
            let truth = gold_checks(&s.lab().gold.factors(p, answer));
            let (p_ids, c_ids) = s.pair_ids(p, answer)?;
            let head = [p_ids, c_ids].concat();
            for (principle, yes) in rules.extract(&text).checks {
                let i = PHRASES.iter().position(|(q, ..)| *q == principle).ok_or_else(|| {
                    LabError::config("RULES", format!("names {principle:?}, which no phrase list has"))
                })?;
                checks_right += (truth[i] == yes) as usize;
                let ids = [head.as_slice(), &suffixes[i]].concat();
                examples.push(SegmentExample { targets: vec![(ids.len() - 1, if yes { 1.0 } else { 0.0 })], ids });
            }
        }
    }
    let principle_model = s.train_segment_model(&base.dir, &examples, 1)?;
    let all: Vec<&str> = PHRASES.iter().map(|(p, ..)| *p).collect();
    let principle_all = principle_reward(s, &principle_model, &all)?;
    let principle_concise = principle_reward(s, &principle_model, &[CONCISE])?;
    let bt_reward = ModelReward::new(bt.clone()).map_err(stage("reward"))?;

    // Gold accuracy on pairs of SFT answers to the test prompts.
    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let (temp, max_new) = (cfg.eval.temperature, cfg.eval.max_new_tokens);
    let sft_test = s.sample(&base.sft, &test, 2, temp, max_new, 0x7e57)?;
    let test_pairs = super::gold_ordered_pairs(&s.lab().gold, &test, &sft_test);
    let arms = vec![
        ("BT RM".to_string(), pair_accuracy(s, &test_pairs, &bt_reward)?),
        ("principle RM".to_string(), pair_accuracy(s, &test_pairs, &principle_all)?),
    ];

    // A best-of-n pool: per-principle accuracy, steering, length correlation.
    let pool_n = 2 * cfg.best_of_n.n;
    let pool = s.sample(&base.sft, &test, pool_n, temp, max_new, 0xb0b)?;
    let (mut pi, mut ci, mut items) = (Vec::new(), Vec::new(), Vec::new());
    for (p, answers) in test.iter().zip(&pool) {
        for a in answers {
            let (x, y) = s.pair_ids(&p.text, a)?;
            pi.push(x);
            ci.push(y);
            items.push((p, a.clone()));
        }
    }
    let probs = principle_all.probabilities(&pi, &ci).map_err(stage("reward"))?;
    let score_all = principle_all.score(&pi, &ci).map_err(stage("reward"))?;
    let score_concise = principle_concise.score(&pi, &ci).map_err(stage("reward"))?;
    let score_bt = bt_reward.score(&pi, &ci).map_err(stage("reward"))?;
    let gold = &s.lab().gold;
    let truths: Vec<[bool; 6]> = items.iter().map(|(p, a)| gold_checks(&gold.factors(&p.text, a))).collect();
    let lengths: Vec<f64> = items.iter().map(|(_, a)| crate::chat::answer_words(a) as f64).collect();
    let mut extras = vec![
        ("annotator actions per arm".to_string(), n as f64),
        ("reviews".to_string(), reviews as f64),
        ("principle checks extracted".to_string(), examples.len() as f64),
        ("extracted checks that agree with gold".to_string(), checks_right as f64 / examples.len().max(1) as f64),
        ("gold-ordered test pairs".to_string(), test_pairs.len() as f64),
        ("best-of-n pool per test prompt".to_string(), pool_n as f64),
    ];
    for (k, (p, ..)) in PHRASES.iter().enumerate() {
        let right = probs[k].iter().zip(&truths).filter(|(q, t)| (**q > 0.5) == t[k]).count();
        extras.push((format!("pool accuracy, {p}"), right as f64 / truths.len().max(1) as f64));
        let yes = truths.iter().filter(|t| t[k]).count();
        extras.push((format!("pool gold yes rate, {p}"), yes as f64 / truths.len().max(1) as f64));
    }
    let f32s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    extras.push(("length correlation, BT RM".to_string(), pearson(&f32s(&score_bt), &lengths)));
    extras.push(("length correlation, principle RM (all)".to_string(), pearson(&f32s(&score_all), &lengths)));
    for (name, scores) in [("P = all", &score_all), ("P = {concise}", &score_concise), ("BT RM", &score_bt)] {
        let (mut brevity, mut len, mut g) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..test.len() {
            let range = j * pool_n..(j + 1) * pool_n;
            let best = range.clone().max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(range.start);
            let (p, a) = &items[best];
            brevity.push(gold.factors(&p.text, a).brevity);
            len.push(lengths[best]);
            g.push(gold.score(&p.text, a));
        }
        extras.push((format!("best-of-{pool_n} gold brevity, {name}"), crate::metrics::mean(&brevity)));
        extras.push((format!("best-of-{pool_n} words, {name}"), crate::metrics::mean(&len)));
        extras.push((format!("best-of-{pool_n} gold, {name}"), crate::metrics::mean(&g)));
    }
    let statistic = arms[1].1 - arms[0].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no flips and every principle mentioned, the rule file reads back gold's checks.
    #[test]
    fn the_rule_file_reads_back_every_phrase() {
        let rules = PrincipleRules::parse(RULES).unwrap();
        assert_eq!(rules.principles(), PHRASES.iter().map(|(p, ..)| *p).collect::<Vec<_>>());
        for (k, (p, yes, no)) in PHRASES.iter().enumerate() {
            for (phrases, want) in [(yes, true), (no, false)] {
                for phrase in phrases {
                    let e = rules.extract(phrase);
                    assert_eq!(e.checks.len(), 1, "{phrase:?} -> {:?}", e.checks);
                    assert_eq!(e.checks.get(*p), Some(&want), "{phrase:?} (principle {k})");
                }
            }
        }
    }

    #[test]
    fn reviews_follow_gold_up_to_the_flips() {
        let gold = GoldReward::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let rules = PrincipleRules::parse(RULES).unwrap();
        let (prompt, answer) = ("What is 2 + 3?", "Ugh, it is 5. Ugh, it is 5.");
        let truth = gold_checks(&gold.factors(prompt, answer));
        let (mut agree, mut total) = (0, 0);
        for _ in 0..400 {
            for (p, yes) in rules.extract(&review(&gold, prompt, answer, &mut rng)).checks {
                let k = PHRASES.iter().position(|(q, ..)| *q == p).unwrap();
                agree += (truth[k] == yes) as usize;
                total += 1;
            }
        }
        let rate = agree as f64 / total as f64;
        // about 400 · 6 · 0.6 = 1,440 checks at 0.9 agreement
        assert!((1_300..1_600).contains(&total), "{total}");
        assert!((rate - (1.0 - P_FLIP)).abs() < 0.03, "{rate}");
        assert!(
            !truth[2] && !truth[4],
            "the rude, repeated answer is neither polite nor free of repetition: {truth:?}"
        );
    }
}
