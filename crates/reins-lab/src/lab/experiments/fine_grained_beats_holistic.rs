//! Fine-Grained RLHF (Wu et al., "Fine-Grained Human Feedback Gives Better Rewards for Language
//! Model Training", NeurIPS 2023, arXiv:2306.01693): at an equal annotation budget, dense
//! sentence-level rewards from span labels plus a holistic reward model give PPO a better
//! policy than one holistic reward model on pairwise labels alone.
//!
//! Design (research note §5e, fixed before the full run):
//! - Budget: the holistic arm's `n` labelled pairs. Span-labelling one response costs two
//!   comparisons (`c_s = 2·c_p`), so the fine-grained arm gets the first `n/2` pairs and span
//!   labels on `n/4` other SFT responses (the lab's annotator, [`crate::span_labels`]: a span
//!   over each rude, filler, repeated or wrong sentence, each sentence's verdict flipped with
//!   probability 0.1).
//! - Rewards, both standardised by the holistic model's score mean and deviation on its own
//!   training responses: *PPO (holistic)* gets `(s − μ)/σ` of the model on all `n` pairs at the
//!   last token; *FG-PPO* gets `0.3·(s − μ)/σ` of the model on `n/2` pairs plus `±0.5` at the
//!   end of each sentence from a sentence-level segment model (the paper's completeness and
//!   factuality weights).
//! - All arms run the lab's PPO (`[ppo]`) from SFT with the same seed. The metric is the mean
//!   gold score on the test prompts; the rule reads FG-PPO − PPO (holistic).
//! - Reported beside: KL to SFT and erroneous sentences per answer of each arm, and FG-PPO with
//!   the segment weight ×3 (does the weight steer the sentence errors?).
//!
//! Not run here: a sub-sentence model for relevance (the world's errors are whole sentences),
//! several segment models per error type, the paper's early stop on KL.

use reins_data::HfTokenizer;
use reins_train::rewards::fine_grained::{FineGrainedReward, SegmentReward};
use reins_train::rewards::segments::Granularity;
use reins_train::rewards::RewardSource;
use reins_train::trainers::segment_reward::{SegmentExample, SegmentRewardSpec};

use super::ppo_arms::{standardised_reward, train_ppo_with, training_moments, PpoArm};
use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::span_labels::{completion_decoder, sentence_errors, span_labels};
use crate::{LabError, Split};

/// The annotator's per-sentence mistake rate.
const SPAN_NOISE: f64 = 0.1;
/// Cost of span-labelling one response, in pairwise comparisons.
const SPAN_COST: usize = 2;
/// Segment reward per sentence (the paper's factuality weight) and the holistic model's weight
/// in the fine-grained reward (its completeness weight).
const W_SEGMENT: f32 = 0.5;
const W_HOLISTIC: f32 = 0.3;

pub fn experiment() -> Experiment {
    Experiment {
        id: "fine_grained_beats_holistic",
        claim: "At an equal annotation budget (a span-labelled response costs two comparisons), PPO on dense sentence-level rewards from span labels plus a holistic reward model on half the pairs reaches a higher gold reward than PPO on one holistic reward model trained on all the pairs.",
        paper: Paper {
            title: "Fine-Grained Human Feedback Gives Better Rewards for Language Model Training",
            arxiv: "2306.01693",
        },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: "FG-PPO", baseline: "PPO (holistic)", direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    run_with(s, base, true)
}

/// The design above; `reward_clean = false` pays only `−w` for an erroneous sentence and
/// nothing for a clean one ([`super::fine_grained_penalties_beat_holistic`]).
pub(crate) fn run_with(s: &mut Session, base: &Base, reward_clean: bool) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0xf1e6)?;
    let n = labelled.records.len();

    // Holistic arm: every pair.
    let full = s.reward_models(base, &labelled.records, 1)?.remove(0);
    // Fine-grained arm: half the pairs, and span labels on n / (2·SPAN_COST) responses of the
    // pairs the labelled half did not use.
    let half_records = &labelled.records[..n / 2];
    let half = s.train_reward_model(&base.dir, half_records, 1)?;
    let n_spans = n / 2 / SPAN_COST;
    let tok = HfTokenizer::from_dir(&base.dir).map_err(stage("tokenizer"))?;
    let decode = completion_decoder(tok);
    let spec = SegmentRewardSpec { granularity: Granularity::Sentence, tags: Vec::new() };
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(cfg.seed ^ 0x5ba5);
    let mut examples = Vec::new();
    let (mut segments, mut errors) = (0usize, 0usize);
    for (p, a, _) in labelled.pairs.iter().rev() {
        if examples.len() == n_spans {
            break;
        }
        let (p_ids, c_ids) = s.pair_ids(p, a)?;
        let text = decode(&c_ids);
        let Some(spans) = span_labels(&s.lab().gold, p, &text, SPAN_NOISE, &mut rng) else { continue };
        let targets: Vec<(usize, f32)> =
            spec.targets(&c_ids, &spans, &decode).into_iter().map(|(pos, y)| (p_ids.len() + pos, y)).collect();
        segments += targets.len();
        errors += targets.iter().filter(|t| t.1 < 0.5).count();
        examples.push(SegmentExample { ids: [p_ids, c_ids].concat(), targets });
    }
    let segment_model = s.train_segment_model(&base.dir, &examples, 2)?;

    let segment = |weight: f32| -> Result<SegmentReward, LabError> {
        let mut r = SegmentReward::new(segment_model.clone(), spec.clone(), weight, Box::new(decode.clone()))
            .map_err(stage("reward"))?;
        r.reward_clean = reward_clean;
        Ok(r)
    };
    let full_moments = training_moments(s, &full, &labelled.records)?;
    let holistic_only = Box::new(standardised_reward(&full, full_moments, 1.0)?);
    let half_moments = training_moments(s, &half, half_records)?;
    let fine = |w: f32| -> Result<Box<dyn RewardSource>, LabError> {
        Ok(Box::new(FineGrainedReward {
            segments: vec![segment(w)?],
            holistic: Some(standardised_reward(&half, half_moments, W_HOLISTIC)?),
        }))
    };
    let (ppo, _) = train_ppo_with(s, base, holistic_only, &PpoArm::lab("PPO (holistic)"), None)?;
    let reward = fine(W_SEGMENT)?;
    let (fg, _) = train_ppo_with(s, base, reward, &PpoArm::lab("FG-PPO"), None)?;
    let reward = fine(3.0 * W_SEGMENT)?;
    let (fg3, _) = train_ppo_with(s, base, reward, &PpoArm::lab("FG-PPO (segment weight ×3)"), None)?;

    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    let mut extras = vec![
        ("pairs, holistic arm".to_string(), n as f64),
        ("span-labelled responses, FG arm".to_string(), examples.len() as f64),
        ("labelled sentences that are errors".to_string(), errors as f64 / segments.max(1) as f64),
    ];
    let policies =
        [("SFT", &base.sft), ("PPO (holistic)", &ppo), ("FG-PPO", &fg), ("FG-PPO (segment weight ×3)", &fg3)];
    for (name, policy) in policies {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        let errs: Vec<f64> = test
            .iter()
            .zip(&e.outs)
            .filter_map(|(p, o)| sentence_errors(&s.lab().gold, &p.text, o))
            .map(|t| t.iter().filter(|x| !x.is_empty()).count() as f64)
            .collect();
        let sentences: Vec<f64> = e.outs.iter().map(|o| Granularity::Sentence.segments(o).len() as f64).collect();
        extras.push((format!("sentences per answer, {name}"), crate::metrics::mean(&sentences)));
        extras.push((format!("erroneous sentences per answer, {name}"), crate::metrics::mean(&errs)));
        extras.push((format!("KL to SFT, {name}"), e.kl));
        if name.contains("×3") {
            extras.push((format!("gold, {name}"), e.mean_gold()));
        } else {
            arms.push((name.to_string(), e.mean_gold()));
        }
    }
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
