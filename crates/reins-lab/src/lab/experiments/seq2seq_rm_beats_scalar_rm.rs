//! Sequence-to-sequence reward modelling (Zhou et al., "Sequence to Sequence Reward Modeling:
//! Improving RLHF by Language Feedback", AAAI 2025, arXiv:2409.00162; research note E3): PPO on
//! token-level rewards from an LM trained by sequence MLE on the labelled pairs reaches a better
//! policy than PPO on a scalar Bradley–Terry reward model of the same pairs.
//!
//! Design, fixed before the full run:
//! - **Pairs**: two SFT samples per train prompt labelled by the annotators (`pairs.n_prompts`).
//! - **Scalar RM**: the lab's BT reward model on them; PPO's reward is its score standardised
//!   by its mean and deviation on its training responses, at the last token.
//! - **Seq2seq RM**: the SFT model fine-tuned (the SFT stage's batch and learning rate, twice the
//!   reward model's steps: each pair gives two examples) on `prompt ++ rejected ++ sep → chosen`
//!   and `prompt ++ chosen ++ sep → chosen`; PPO's reward is `±α` per answer token, `+` where the
//!   model's own next token is the answer's ([`reins_train::rewards::seq2seq`]). The paper gives
//!   no magnitude: α is chosen from {0.05, 0.2} by the dev prompts' mean gold.
//! - Both arms run the lab's PPO (`[ppo]`) from SFT with the same seed. **Metric**: mean gold
//!   score on the test prompts; the rule reads seq2seq − scalar. Reported beside: KL to SFT and
//!   answer length (words) of each arm, and how often the seq2seq model's summed token reward
//!   ranks a labelled pair as its label does.
//!
//! Not run here: the note's length-biased annotators and refusal factor (the lab's population
//! has neither), matching the arms' KL by tuning the KL coefficient.

use reins_data::tokenize::preference::PreferenceIds;
use reins_model::LoadOptions;
use reins_train::rewards::seq2seq::{seq2seq_examples, Seq2SeqReward, Seq2SeqSpec};

use super::ppo_arms::{standardised_reward, train_ppo_with, training_moments, PpoArm};
use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{LabError, Split};

const SEQ2SEQ: &str = "PPO (seq2seq RM)";
const SCALAR: &str = "PPO (scalar RM)";
/// The token reward magnitudes tried on dev.
const ALPHAS: [f64; 2] = [0.05, 0.2];
/// Labelled pairs the ranking diagnostic reads.
const DIAGNOSTIC_PAIRS: usize = 400;

pub fn experiment() -> Experiment {
    Experiment {
        id: "seq2seq_rm_beats_scalar_rm",
        claim: "PPO on token-level rewards from a sequence-to-sequence reward model (an LM trained to rewrite each rejected response into the chosen one and to copy the chosen one) reaches a higher gold reward than PPO on a scalar Bradley–Terry reward model of the same labelled pairs.",
        paper: Paper {
            title: "Sequence to Sequence Reward Modeling: Improving RLHF by Language Feedback",
            arxiv: "2409.00162",
        },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: SEQ2SEQ, baseline: SCALAR, direction: Direction::Higher },
        config: |reduced| super::quickstart_settings(reduced, Knobs::default()),
        run,
    }
}

fn run(s: &mut Session, base: &Base, _knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x5e25)?;
    let rows = s.pair_rows(&labelled.records)?;

    // The scalar reward model.
    let rm = s.reward_models(base, &labelled.records, 1)?.remove(0);

    // The sequence-to-sequence reward model.
    let spec = Seq2SeqSpec::default();
    let sep = s.encode(&spec.separator)?;
    let data: Vec<(Vec<u32>, usize)> = rows
        .iter()
        .flat_map(|(p, c, x)| {
            let pair = PreferenceIds {
                prompt_ids: p.clone(),
                chosen_ids: c.clone(),
                rejected_ids: x.clone(),
                margin: None,
                strength: None,
            };
            seq2seq_examples(&pair, &sep).map(|e| {
                let target = e.labels.iter().filter(|&&l| l != -100).count();
                let n = e.input_ids.len() - target;
                (e.input_ids, n)
            })
        })
        .collect();
    let start = s.load(&base.dir, LoadOptions { trainable: true, ..Default::default() })?;
    let budget = crate::config::TrainBudget { max_steps: 2 * cfg.reward_model.max_steps, ..cfg.sft.clone() };
    let lm = s.train_lm("seq2seq reward model", start, &data, &budget)?.detached();
    let seq2seq = |alpha: f64| Seq2SeqReward::new(lm.clone(), sep.clone(), alpha as f32).map_err(stage("reward"));

    // Does the seq2seq model rank the labelled pairs as the annotators did?
    let probe = &rows[..rows.len().min(DIAGNOSTIC_PAIRS)];
    let (ps, cs): (Vec<Vec<u32>>, Vec<Vec<u32>>) =
        probe.iter().flat_map(|(p, c, x)| [(p.clone(), c.clone()), (p.clone(), x.clone())]).unzip();
    let sums: Vec<f32> =
        seq2seq(1.0)?.token_rewards(&ps, &cs).map_err(stage("reward"))?.iter().map(|r| r.iter().sum()).collect();
    let agree = sums.chunks(2).filter(|w| w[0] > w[1]).count() as f64 / probe.len().max(1) as f64;

    let moments = training_moments(s, &rm, &labelled.records)?;
    let scalar = Box::new(standardised_reward(&rm, moments, 1.0)?);
    let (scalar_policy, _) = train_ppo_with(s, base, scalar, &PpoArm::lab(SCALAR), None)?;
    let dev = s.lab().world.prompts(Split::Dev, cfg.eval.n_prompts);
    let mut extras = vec![
        ("labelled pairs".to_string(), labelled.records.len() as f64),
        ("seq2seq pair ranking agrees with the label".to_string(), agree),
    ];
    let mut best = None;
    for alpha in ALPHAS {
        let name = format!("PPO (seq2seq RM, α = {alpha})");
        let (policy, _) = train_ppo_with(s, base, Box::new(seq2seq(alpha)?), &PpoArm::lab("PPO (seq2seq RM)"), None)?;
        let g = s.evaluate(&format!("{name}, dev"), &policy, base, &dev, 5)?.mean_gold();
        extras.push((format!("dev gold, seq2seq α = {alpha}"), g));
        if best.as_ref().is_none_or(|(b, _, _)| g > *b) {
            best = Some((g, alpha, policy));
        }
    }
    let (_, alpha, seq2seq_policy) = best.ok_or_else(|| LabError::config("ALPHAS", "needs a value"))?;
    extras.push(("α chosen on dev".to_string(), alpha));

    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let mut arms = Vec::new();
    for (name, policy) in [("SFT", &base.sft), (SCALAR, &scalar_policy), (SEQ2SEQ, &seq2seq_policy)] {
        let e = s.evaluate(name, policy, base, &test, 4)?;
        let words: Vec<f64> = e.outs.iter().map(|o| o.split_whitespace().count() as f64).collect();
        extras.push((format!("KL to SFT, {name}"), e.kl));
        extras.push((format!("answer words, {name}"), crate::metrics::mean(&words)));
        arms.push((name.to_string(), e.mean_gold()));
    }
    let statistic = arms[2].1 - arms[1].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
