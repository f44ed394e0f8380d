//! E2 (Shen et al., "The Trickle-down Impact of Reward (In-)consistency on RLHF",
//! arXiv:2309.16155; research note reward_modeling §2(e)): ConvexDA at training time and
//! RewardFusion at scoring time make a reward model more consistent on Contrast Instructions,
//! and the more consistent model picks more correct answers downstream.
//!
//! Design, fixed before the full run:
//! - **Labels**: two SFT samples per train prompt labelled by the annotators (`pairs.n_prompts`),
//!   as the other reward-model experiments.
//! - **Four reward models** on those labels, all with member 0's seed (same initial head, same
//!   batch draws, same steps): *BT*; *BT + ConvexDA*: each labelled pair's preferred answer
//!   perturbed 5 times (spelling errors on 5 % of its words), the variants embedded by the model
//!   about to be trained (its pooled last hidden state, standing in for SimCSE), the variants on
//!   the convex hull of their 2-D PCA projection added as pairs `variant ≻ rejected`, trained with
//!   the same number of steps (no extra budget); *BT + RewardFusion*: the BT model scored as the
//!   similarity-weighted mean of its own reward and those of its top 5 training texts (prompt +
//!   preferred answer) with cosine ≥ 0.9 of its pooled feature; *both*: ConvexDA's model scored
//!   with RewardFusion over the original training texts.
//! - **Metrics**: (i) response and instruction consistency on `reward_model.n_eval_pairs` lab
//!   contrast items ([`crate::contrast`]: a test prompt and a one-word neighbour with another
//!   correct answer; gold is 100 % consistent on them); (ii) accuracy against gold on pairs of
//!   two SFT samples for `reward_model.n_eval_pairs` test prompts (gold ties left out); (iii)
//!   best-of-n over `knobs.pool_size` SFT samples for `knobs.pool_prompts` test prompts: the
//!   gold score of each model's pick and whether it is correct (gold's correctness factor), on
//!   all of them and on those of a contrast kind.
//! - **Rule**: the paired gap in response consistency (both) − (BT). The trickle-down — the gap
//!   in best-of-n correctness on contrast-kind prompts — is reported beside it, not ruled on.
//!
//! Not run here: PPO against each model (the note's PPO win rate), the paper's human baseline.

use reins_model::{LoadOptions, Model};
use reins_train::consistency::ConsistencyReport;
use reins_train::convex_da::{hull_vertices, perturb_words, DEFAULT_VARIANTS, DEFAULT_WORD_RATE};
use reins_train::rewards::FusionReward;

use crate::contrast::{contrast_items, CONTRAST_KINDS};
use crate::experiment::stages::Base;
use crate::experiment::{stage, Session};
use crate::lab::{Direction, Experiment, Knobs, Paper, Rule, SeedOutcome};
use crate::{metrics, LabError, PreferenceRecord, Split};

const BT: &str = "BT";
const DA: &str = "BT + ConvexDA";
const FUSION: &str = "BT + RewardFusion";
const BOTH: &str = "BT + ConvexDA + RewardFusion";

pub fn experiment() -> Experiment {
    Experiment {
        id: "consistency_tricks_raise_rm_consistency",
        claim: "A reward model trained with ConvexDA and scored with RewardFusion ranks each contrast instruction's own correct answer above its neighbour's more often (response consistency) than the plain Bradley-Terry reward model of the same labels.",
        paper: Paper {
            title: "The Trickle-down Impact of Reward (In-)consistency on RLHF",
            arxiv: "2309.16155",
        },
        metric: "response consistency on lab contrast items (a test prompt and a one-word neighbour with another correct answer)",
        split: "test",
        rule: Rule::PairedGap { better: BOTH, baseline: BT, direction: Direction::Higher },
        config: |reduced| {
            let knobs = if reduced {
                Knobs { pool_size: 8, pool_prompts: 8, ..Knobs::default() }
            } else {
                Knobs { pool_size: 64, pool_prompts: 64, ..Knobs::default() }
            };
            let mut c = super::quickstart_settings(reduced, knobs);
            if reduced {
                c.lab.reward_model.max_steps = 12;
            }
            c
        },
        run,
    }
}

/// A reward model as an arm scores: plainly, or with RewardFusion.
enum Scorer {
    Plain(Box<Model>),
    Fused(Box<FusionReward>),
}

impl Scorer {
    /// Scores of `(prompt, response)` items and the mean number of fused neighbours (0 plain).
    fn score(&self, s: &Session, items: &[(String, String)]) -> Result<(Vec<f64>, f64), LabError> {
        match self {
            Scorer::Plain(m) => Ok((s.member_scores(std::slice::from_ref(&**m), items)?.remove(0), 0.0)),
            Scorer::Fused(f) => {
                let (mut prompts, mut completions) = (Vec::new(), Vec::new());
                for (p, r) in items {
                    let (a, b) = s.pair_ids(p, r)?;
                    prompts.push(a);
                    completions.push(b);
                }
                let (_, fused, used) = f.plain_and_fused(&prompts, &completions).map_err(stage("reward fusion"))?;
                let mean_used = used.iter().sum::<usize>() as f64 / used.len().max(1) as f64;
                Ok((fused, mean_used))
            }
        }
    }
}

/// ConvexDA pairs of `records` (`variant ≻ rejected`), the variants embedded by the score model
/// about to be trained: `reins_train::convex_da::convex_da_variants`, batched over all pairs.
fn convex_da_pairs(s: &Session, base: &Base, records: &[PreferenceRecord]) -> Result<Vec<PreferenceRecord>, LabError> {
    let cfg = s.cfg();
    let mut rng = crate::rng::stream(cfg.seed, "convex_da");
    let variants: Vec<Vec<String>> = records
        .iter()
        .map(|r| (0..DEFAULT_VARIANTS).map(|_| perturb_words(&r.chosen, DEFAULT_WORD_RATE, &mut rng)).collect())
        .collect();
    let embedder = s.load(&base.dir, LoadOptions { score_head: Some(1), seed: cfg.seed, ..Default::default() })?;
    let items: Vec<(String, String)> =
        records.iter().zip(&variants).flat_map(|(r, vs)| vs.iter().map(|v| (r.prompt.clone(), v.clone()))).collect();
    let phi = s.rm_features(&embedder, &items)?;
    let mut out = Vec::new();
    for ((r, vs), e) in records.iter().zip(&variants).zip(phi.chunks(DEFAULT_VARIANTS)) {
        if vs.iter().all(|v| *v == r.chosen) {
            continue; // no word to perturb
        }
        for k in hull_vertices(e) {
            out.push(PreferenceRecord { chosen: vs[k].clone(), ..r.clone() });
        }
    }
    Ok(out)
}

/// The token ids of `prompt + preferred` and `prompt + other`.
type SeqPair = (Vec<u32>, Vec<u32>);

/// The sequence pairs of preference records.
fn rows(s: &Session, records: &[PreferenceRecord]) -> Result<Vec<SeqPair>, LabError> {
    Ok(s.pair_rows(records)?.into_iter().map(|(p, c, x)| ([p.clone(), c].concat(), [p, x].concat())).collect())
}

fn run(s: &mut Session, base: &Base, knobs: &Knobs) -> Result<SeedOutcome, LabError> {
    let cfg = s.cfg().clone();
    let prompts = s.lab().world.prompts(Split::Train, cfg.pairs.n_prompts);
    let labelled = s.labelled_pairs(&base.sft, &prompts, 1, cfg.seed ^ 0x1abe1)?;
    let records = labelled.records;
    let none = Default::default();

    s.announce(BT);
    let bt = s.train_reward_model_rows(&base.dir, &rows(s, &records)?, 0, None, &none, None)?;
    s.announce("ConvexDA pairs");
    let added = convex_da_pairs(s, base, &records)?;
    let augmented: Vec<PreferenceRecord> = records.iter().chain(&added).cloned().collect();
    s.announce(DA);
    let da = s.train_reward_model_rows(&base.dir, &rows(s, &augmented)?, 0, None, &none, None)?;

    s.announce("RewardFusion index");
    let corpus: Vec<Vec<u32>> = records
        .iter()
        .map(|r| s.pair_ids(&r.prompt, &r.chosen).map(|(p, c)| [p, c].concat()))
        .collect::<Result<_, _>>()?;
    let fused = |m: &Model| FusionReward::new(m.clone(), &corpus).map_err(stage("reward fusion"));
    let arms_rm = [
        (BT, Scorer::Plain(Box::new(bt.clone()))),
        (DA, Scorer::Plain(Box::new(da.clone()))),
        (FUSION, Scorer::Fused(Box::new(fused(&bt)?))),
        (BOTH, Scorer::Fused(Box::new(fused(&da)?))),
    ];

    // (i) Contrast items; (ii) held-out gold-ordered pairs; (iii) the best-of-n pool.
    let items = contrast_items(&s.lab().world, Split::Test, cfg.reward_model.n_eval_pairs);
    let queries: Vec<(String, String)> = items.iter().flat_map(|it| it.queries()).collect();
    let gold_report = ConsistencyReport::from_scores(
        &queries.chunks(4).map(|q| [0, 1, 2, 3].map(|k| s.lab().gold.score(&q[k].0, &q[k].1))).collect::<Vec<_>>(),
    );
    s.announce("test pairs");
    let held = s.lab().world.prompts(Split::Test, cfg.reward_model.n_eval_pairs);
    let samples = s.sample_eval(&base.sft, &held, 2, 2)?;
    let pairs = super::gold_ordered_pairs(&s.lab().gold, &held, &samples);
    let better: Vec<(String, String)> = pairs.iter().map(|(p, b, _)| (p.clone(), b.clone())).collect();
    let worse: Vec<(String, String)> = pairs.iter().map(|(p, _, w)| (p.clone(), w.clone())).collect();
    s.announce("best-of-n pool");
    let pool_prompts = s.lab().world.prompts(Split::Test, knobs.pool_prompts);
    let n = knobs.pool_size;
    let pool = s.sample_eval(&base.sft, &pool_prompts, n, 8)?;
    let flat: Vec<(String, String)> =
        pool_prompts.iter().zip(&pool).flat_map(|(p, c)| c.iter().map(|x| (p.text.clone(), x.clone()))).collect();
    let gold: Vec<f64> = flat.iter().map(|(p, r)| s.lab().gold.score(p, r)).collect();
    let correct: Vec<f64> = flat.iter().map(|(p, r)| f64::from(s.lab().gold.factors(p, r).correctness > 0.5)).collect();
    let contrast_kind: Vec<bool> = pool_prompts.iter().map(|p| CONTRAST_KINDS.contains(&p.task.kind())).collect();
    // Mean of `values` at the picks (indices into `flat`) of the prompts `keep` selects.
    let mean_at = |values: &[f64], picks: &[usize], keep: &dyn Fn(usize) -> bool| {
        let xs: Vec<f64> = picks.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, &j)| values[j]).collect();
        metrics::mean(&xs)
    };
    let all = |_: usize| true;
    let of_contrast_kind = |i: usize| contrast_kind[i];

    let sft_picks: Vec<usize> = (0..pool_prompts.len()).map(|i| i * n).collect();
    let mut arms = Vec::new();
    let mut extras = vec![
        ("labelled pairs".to_string(), records.len() as f64),
        ("ConvexDA pairs added".to_string(), added.len() as f64),
        ("contrast items".to_string(), items.len() as f64),
        ("gold response consistency".to_string(), gold_report.response.rate()),
        ("gold instruction consistency".to_string(), gold_report.instruction.rate()),
        ("held-out test pairs gold does not tie".to_string(), pairs.len() as f64),
        ("best-of-n: n".to_string(), n as f64),
        ("best-of-n: test prompts".to_string(), pool_prompts.len() as f64),
        ("best-of-n: test prompts of a contrast kind".to_string(), contrast_kind.iter().filter(|&&c| c).count() as f64),
        ("SFT sample: gold".to_string(), mean_at(&gold, &sft_picks, &all)),
        ("SFT sample: correct, contrast-kind prompts".to_string(), mean_at(&correct, &sft_picks, &of_contrast_kind)),
    ];
    let mut bon_correct = Vec::new();
    for (name, scorer) in &arms_rm {
        s.announce(name);
        let (c, used) = scorer.score(s, &queries)?;
        let rep = ConsistencyReport::from_scores(&c.chunks(4).map(|x| [x[0], x[1], x[2], x[3]]).collect::<Vec<_>>());
        let (hi, _) = scorer.score(s, &better)?;
        let (lo, _) = scorer.score(s, &worse)?;
        let accuracy = hi.iter().zip(&lo).filter(|(h, l)| h > l).count() as f64 / hi.len().max(1) as f64;
        let (scores, _) = scorer.score(s, &flat)?;
        let picks: Vec<usize> = (0..pool_prompts.len())
            .map(|i| (i * n..(i + 1) * n).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(i * n))
            .collect();
        let on_contrast = mean_at(&correct, &picks, &of_contrast_kind);
        bon_correct.push(on_contrast);
        arms.push((name.to_string(), rep.response.rate()));
        extras.extend([
            (format!("instruction consistency, {name}"), rep.instruction.rate()),
            (format!("gold accuracy on held-out pairs, {name}"), accuracy),
            (format!("best-of-n gold, {name}"), mean_at(&gold, &picks, &all)),
            (format!("best-of-n correct, all prompts, {name}"), mean_at(&correct, &picks, &all)),
            (format!("best-of-n correct, contrast-kind prompts, {name}"), on_contrast),
        ]);
        if matches!(scorer, Scorer::Fused(_)) {
            extras.push((format!("mean fused neighbours on contrast queries, {name}"), used));
        }
    }
    extras.push((
        format!("trickle-down: best-of-n correct on contrast-kind prompts, ({BOTH}) − ({BT})"),
        bon_correct[3] - bon_correct[0],
    ));
    let statistic = arms[3].1 - arms[0].1;
    Ok(SeedOutcome { arms, statistic, extras, curves: Vec::new() })
}
