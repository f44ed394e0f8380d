//! OSP (Zhai et al., "Online Self-Preferring Language Models", arXiv:2405.14103; research note
//! §10(e)): on the same self-generated, self-judged pairs, the soft-preference cross-entropy —
//! each ranked pair weighted by the judge's preference strength — beats hard labels.
//!
//! Design, fixed before the full run:
//! - **A model that can judge.** The SFT model is fine-tuned on judge-format examples made from
//!   the annotators' labels of SFT sample pairs, mixed one to one with SFT examples
//!   ([`crate::judge_format`], stage `judge_sft`). That model is every arm's start, its
//!   reference and — through [`reins_train::judges::SelfJudge`], the policy at the start of each
//!   round — its judge. Its accuracy against gold on dev pairs and its length bias (correlation of
//!   `p − ½` with the length difference) are reported first.
//! - **Arms**, each `knobs.dpo_rounds` rounds of `knobs.dpo_prompts_per_round` train prompts,
//!   `knobs.osp_generations` samples per prompt, two epochs per round, the lab's DPO β and
//!   learning rate, the same sampling seeds: hard labels on best vs worst; hard labels on ranked
//!   pairs (1st–Kth, 2nd–(K−1)th, …); SPCE on ranked pairs (the claim's arm); SPCE with the
//!   population's exact preference probability as the strength (an upper bound: the gold
//!   oracle judges); SPCE with the round's strengths shuffled among its pairs (a placebo).
//! - **Metric**: mean gold score on the test prompts. **Rule**: the paired gap SPCE − hard labels
//!   on ranked pairs. Reported beside it: each arm's dev gold after every round (the paper's
//!   overfitting claim reads the drop from the peak to the last round), KL to the start, pairs.
//!
//! Not built here: the paper's 200-prompt low-data regime and its judge prompt (unverified; the
//! lab's template is [`crate::judge_format::TEMPLATE`]).

use std::collections::HashMap;
use std::sync::Arc;

use reins_data::HfTokenizer;
use reins_model::{LoadOptions, Model};
use reins_train::judges::{PairwiseJudge, SelfJudge};
use reins_train::losses::DpoConfig;
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::osp::{Labels, OspConfig, OspJudge, OspTrainer, Pairing};

use super::iterative_dpo_beats_offline::{round_config, round_optim};
use super::token_text::{TextJudge, TextView};
use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::judge_format::{self, PopulationStrength};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::report::Curve;
use crate::{LabError, Prompt, Split};

const SOFT: &str = "SPCE, ranked pairs";
const HARD: &str = "hard labels, ranked pairs";

pub fn experiment() -> Experiment {
    Experiment {
        id: "osp_soft_labels_beat_hard_labels",
        claim: "On the same self-generated, self-judged ranked pairs, the soft-preference cross-entropy (each pair weighted by the self-judge's preference strength) reaches a higher gold reward than DPO on hard labels.",
        paper: Paper { title: "Online Self-Preferring Language Models", arxiv: "2405.14103" },
        metric: "mean gold score of the policy's answers to the test prompts",
        split: "test",
        rule: Rule::PairedGap { better: SOFT, baseline: HARD, direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced {
                Knobs {
                    dpo_rounds: 2,
                    dpo_prompts_per_round: 8,
                    osp_generations: 4,
                    judge_sft_steps: 20,
                    ..Knobs::default()
                }
            } else {
                Knobs::default()
            };
            super::quickstart_settings(reduced, knobs)
        },
        run,
    }
}

/// One arm: how its pairs are formed and labelled, and whether the population judges instead of
/// the policy.
struct Arm {
    name: &'static str,
    pairing: Pairing,
    labels: Labels,
    gold_judge: bool,
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    // 1. The judge-trained start model.
    let label_prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &label_prompts, 1, cfg.seed ^ 0x1abe1)?;
    let start = s.judge_sft(base, &labelled.records, knobs.judge_sft_steps)?;
    let tok = Arc::new(HfTokenizer::from_dir(&start.dir).map_err(stage("tokenizer"))?);

    // 2. How well it judges, on dev pairs of its own samples.
    let dev = s.lab().world.prompts(Split::Dev, cfg.eval.n_prompts);
    let (accuracy, length_bias) = judge_quality(s, &start, &tok, &dev)?;
    let mut extras = vec![
        ("self-judge accuracy vs gold (dev pairs)".to_string(), accuracy),
        ("self-judge length bias (corr of p − ½ with length gap)".to_string(), length_bias),
    ];

    // 3. The arms, on the same rounds of prompts.
    let prompts = s.lab().world.prompts(Split::Train, knobs.dpo_rounds * knobs.dpo_prompts_per_round);
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| s.encode(&p.chat())).collect::<Result<_, _>>()?;
    let mut texts = HashMap::new();
    for (p, i) in prompts.iter().zip(&ids) {
        texts.insert(i.clone(), p.text.clone());
    }
    let rounds: Vec<Vec<Vec<u32>>> = ids.chunks(knobs.dpo_prompts_per_round).map(<[Vec<u32>]>::to_vec).collect();
    let arms = [
        Arm {
            name: "hard labels, best vs worst",
            pairing: Pairing::BestWorst,
            labels: Labels::Hard,
            gold_judge: false,
        },
        Arm { name: HARD, pairing: Pairing::Ranked, labels: Labels::Hard, gold_judge: false },
        Arm { name: SOFT, pairing: Pairing::Ranked, labels: Labels::Soft, gold_judge: false },
        Arm { name: "SPCE, gold-oracle strength", pairing: Pairing::Ranked, labels: Labels::Soft, gold_judge: true },
        Arm { name: "SPCE, shuffled strength", pairing: Pairing::Ranked, labels: Labels::Shuffled, gold_judge: false },
    ];
    let dev_start = s.evaluate("start, dev", &start.sft, &start, &dev, 5)?.mean_gold();
    let mut series = Vec::new();
    let mut policies = Vec::new();
    for arm in &arms {
        let judge = if arm.gold_judge {
            let view =
                TextView { texts: texts.clone(), tok: HfTokenizer::from_dir(&start.dir).map_err(stage("tokenizer"))? };
            OspJudge::Other(Box::new(TextJudge { view, judge: PopulationStrength(s.lab().population.clone()) }))
        } else {
            OspJudge::Policy(judge_format::template(), tok.clone())
        };
        let Trained { policy, dev_curve, pairs } = train_arm(s, &start, &rounds, knobs, arm, judge, &dev)?;
        let mut points = vec![(0.0, dev_start)];
        points.extend(dev_curve);
        let peak = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let last = points.last().map_or(f64::NAN, |p| p.1);
        extras.push((format!("dev gold, peak − last round, {}", arm.name), peak - last));
        extras.push((format!("pairs, {}", arm.name), pairs));
        series.push((arm.name.to_string(), points));
        policies.push(policy);
    }

    // 4. Test.
    let test = s.lab().world.prompts(Split::Test, cfg.eval.n_prompts);
    let e = s.evaluate("start", &start.sft, &start, &test, 4)?;
    let mut results = vec![("start (judge-trained SFT)".to_string(), e.mean_gold())];
    for (arm, policy) in arms.iter().zip(&policies) {
        let e = s.evaluate(arm.name, policy, &start, &test, 4)?;
        results.push((arm.name.to_string(), e.mean_gold()));
        extras.push((format!("KL to start, {}", arm.name), e.kl));
        let words =
            e.outs.iter().map(|o| o.split_whitespace().count() as f64).sum::<f64>() / e.outs.len().max(1) as f64;
        extras.push((format!("mean words, {}", arm.name), words));
    }
    let value = |name: &str| results.iter().find(|(n, _)| n == name).map_or(f64::NAN, |r| r.1);
    let statistic = value(SOFT) - value(HARD);
    let curve = Curve {
        title: "Dev gold after each round".into(),
        x_label: "round".into(),
        y_label: "mean gold (dev prompts)".into(),
        series,
    };
    Ok(SeedOutcome { arms: results, statistic, extras, curves: vec![curve] })
}

/// The self-judge's accuracy against gold (pairs gold does not tie) and the correlation of its
/// `p − ½` with the length gap in words, on two samples of `start` per dev prompt.
fn judge_quality(
    s: &mut Session,
    start: &Base,
    tok: &Arc<HfTokenizer>,
    dev: &[Prompt],
) -> Result<(f64, f64), LabError> {
    let cfg = s.cfg().clone();
    let samples = s.sample(&start.sft, dev, 2, cfg.pairs.temperature, cfg.pairs.max_new_tokens, 7)?;
    let judge =
        SelfJudge::new(start.sft.clone(), tok.clone(), judge_format::template()).map_err(stage("self-judge"))?;
    let mut enc = Vec::new();
    for (p, pair) in dev.iter().zip(&samples) {
        let c = |t: &str| s.encode(&crate::chat::completion(t));
        enc.push((s.encode(&p.chat())?, c(&pair[0])?, c(&pair[1])?));
    }
    let items: Vec<(&[u32], &[u32], &[u32])> = enc.iter().map(|(p, a, b)| (&p[..], &a[..], &b[..])).collect();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let judged = judge.judge_many(&items, &mut rng).map_err(stage("self-judge"))?;
    let (mut right, mut decided, mut gaps, mut lens) = (0usize, 0usize, vec![], vec![]);
    for ((p, pair), j) in dev.iter().zip(&samples).zip(&judged) {
        let gold = &s.lab().gold;
        let (ga, gb) = (gold.score(&p.text, &pair[0]), gold.score(&p.text, &pair[1]));
        if crate::gold::compare_scores(ga, gb) != std::cmp::Ordering::Equal {
            decided += 1;
            right += usize::from((j.p_a > 0.5) == (ga > gb));
        }
        gaps.push(j.p_a - 0.5);
        let words = |t: &str| t.split_whitespace().count() as f64;
        lens.push(words(&pair[0]) - words(&pair[1]));
    }
    Ok((right as f64 / decided.max(1) as f64, reins_train::statistics::pearson(&gaps, &lens)))
}

/// An arm after training.
struct Trained {
    policy: Model,
    /// `(round, mean dev gold)` after each round.
    dev_curve: Vec<(f64, f64)>,
    /// Pairs trained on, over all rounds.
    pairs: f64,
}

/// One arm from the start model.
fn train_arm(
    s: &mut Session,
    start: &Base,
    rounds: &[Vec<Vec<u32>>],
    knobs: &Knobs,
    arm: &Arm,
    judge: OspJudge,
    dev: &[Prompt],
) -> Result<Trained, LabError> {
    let cfg = s.cfg().clone();
    let policy = s.load(&start.dir, LoadOptions { trainable: true, ..Default::default() })?;
    let c = round_config(&cfg, knobs.osp_generations);
    let osp = OspConfig { pairing: arm.pairing, labels: arm.labels };
    let loss: DpoConfig =
        serde_json::from_value(serde_json::json!({"beta": cfg.dpo.beta})).map_err(stage("dpo config"))?;
    let optim = round_optim(&cfg);
    let reference = Reference::Model(Box::new(start.sft.clone()));
    let mut trainer = OspTrainer::new(policy, reference, judge, c, osp, loss, optim).map_err(stage("osp"))?;
    let (mut curve, mut pairs) = (Vec::new(), 0.0);
    for (i, r) in rounds.iter().enumerate() {
        s.progress.stage(&format!("{}, round {}", arm.name, i + 1), 1);
        let m = trainer.round(r).map_err(stage("osp"))?;
        pairs += m.get("pairs").copied().unwrap_or(0.0);
        let strength = m.get("osp/strength").copied().unwrap_or(f64::NAN);
        s.progress.tick(&format!("pairs {pairs:.0} strength {strength:.3}"));
        let policy = trainer.policy.detached();
        let g = s.evaluate(&format!("{}, round {}, dev", arm.name, i + 1), &policy, start, dev, 5)?.mean_gold();
        curve.push(((i + 1) as f64, g));
    }
    Ok(Trained { policy: trainer.policy.detached(), dev_curve: curve, pairs })
}
