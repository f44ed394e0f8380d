//! The evaluation stages of the quickstart that experiments reuse: reward-model accuracy on
//! pairs of test prompts, best-of-n with its over-optimization curves, and the scoreboard of
//! every policy's answers to the test prompts.

use rand::SeedableRng;
use reins_model::Model;

use crate::annotators::Outcome as LabelOutcome;
use crate::metrics;
use crate::report::{MethodRow, OverOptCurve, OverOptPoint, RewardModelRow};
use crate::{Prompt, Split};

use super::stages::{Base, Evaluation};
use super::{Result, Session};

/// Best-of-n against the ensemble and the curves of best-of-n under each reward model.
pub struct BestOfN {
    pub n: usize,
    /// The ensemble's pick of `n` per prompt.
    pub picks: Vec<String>,
    /// Best-of-n under the single RM, then under the ensemble.
    pub curves: Vec<OverOptCurve>,
}

impl Session<'_> {
    /// Stage *reward-model accuracy*: the single RM (member 0) and the ensemble mean scored on
    /// pairs of SFT samples for test prompts, against noiseless gold and against the
    /// population's noisy labels of the same pairs.
    pub fn reward_model_accuracy(&mut self, sft: &Model, members: &[Model]) -> Result<Vec<RewardModelRow>> {
        let cfg = self.cfg;
        // Pairs of test prompts for accuracy against noiseless gold. The test split is read by no
        // tuning choice (the defaults were tuned on the dev split).
        let held = self.lab.world.prompts(Split::Test, cfg.reward_model.n_eval_pairs);
        self.progress.stage("test pairs", 1);
        let held_samples = self.sample(sft, &held, 2, cfg.pairs.temperature, cfg.pairs.max_new_tokens, 2)?;
        self.progress.tick("done");
        let held_pairs: Vec<(String, String, String)> =
            held.iter().zip(&held_samples).map(|(p, s)| (p.text.clone(), s[0].clone(), s[1].clone())).collect();
        let mut rm_rows = Vec::new();
        let score_pairs = |cx: &Session, ms: &[Model]| -> Result<(Vec<f64>, Vec<f64>)> {
            let a: Vec<(String, String)> = held_pairs.iter().map(|(p, a, _)| (p.clone(), a.clone())).collect();
            let b: Vec<(String, String)> = held_pairs.iter().map(|(p, _, b)| (p.clone(), b.clone())).collect();
            Ok((cx.score_mean(ms, &a)?, cx.score_mean(ms, &b)?))
        };
        // The same test pairs labelled by the simulated population: the noisy accuracy a
        // practitioner without gold would see.
        let held_labels: Vec<LabelOutcome> = self
            .lab
            .population
            .label_pairs(&held_pairs, &mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x4e1d))
            .into_iter()
            .map(|l| l.outcome)
            .collect();
        let (sa, sb) = score_pairs(self, &members[..1])?;
        let (acc1, n_acc) = metrics::gold_pair_accuracy(&self.lab.gold, &held_pairs, &sa, &sb);
        rm_rows.push(RewardModelRow {
            name: "single RM".into(),
            accuracy_vs_gold: acc1,
            accuracy_vs_labels: Some(metrics::label_pair_accuracy(&held_labels, &sa, &sb).0),
            n_pairs: n_acc,
        });
        let (ea, eb) = score_pairs(self, members)?;
        let (acc_e, _) = metrics::gold_pair_accuracy(&self.lab.gold, &held_pairs, &ea, &eb);
        rm_rows.push(RewardModelRow {
            name: format!("ensemble of {} (mean)", members.len()),
            accuracy_vs_gold: acc_e,
            accuracy_vs_labels: Some(metrics::label_pair_accuracy(&held_labels, &ea, &eb).0),
            n_pairs: n_acc,
        });
        Ok(rm_rows)
    }

    /// Stage *best-of-n*: `best_of_n.n` SFT samples per prompt; the pick of the ensemble's
    /// mean − λ·var, and the over-optimization curves of best-of-n under the single RM and
    /// under the ensemble.
    pub fn best_of_n(&mut self, sft: &Model, members: &[Model], prompts: &[Prompt]) -> Result<BestOfN> {
        let cfg = self.cfg;
        // Best-of-n against the ensemble (mean − λ·var over members), and the over-optimization
        // curves of best-of-n under the single RM and under the ensemble: gold and (calibrated)
        // proxy reward of the pick against KL = log n − (n−1)/n, for n = 1, 2, 4, … (Gao et al.,
        // arXiv:2210.10760, §3.1; Coste et al., arXiv:2310.02743, Fig. 1).
        let n = cfg.best_of_n.n.max(1);
        let (t, n_new) = (cfg.eval.temperature, cfg.eval.max_new_tokens);
        self.progress.stage("best-of-n", 1);
        let cands = self.sample(sft, prompts, n, t, n_new, 5)?;
        self.progress.tick("done");
        let flat: Vec<(String, String)> =
            prompts.iter().zip(&cands).flat_map(|(p, c)| c.iter().map(|x| (p.text.clone(), x.clone()))).collect();
        let per_member = self.score_members(members, &flat)?; // [M][P·n]
        let lambda = cfg.reward_model.uncertainty_penalty;
        let single: Vec<f64> = per_member[0].clone();
        let ensemble: Vec<f64> = (0..flat.len())
            .map(|j| {
                let xs: Vec<f64> = per_member.iter().map(|m| m[j]).collect();
                metrics::mean(&xs) - lambda * metrics::std(&xs).powi(2)
            })
            .collect();
        let cand_gold: Vec<f64> = flat.iter().map(|(p, r)| self.lab.gold.score(p, r)).collect();
        // The index (into `flat`) of the best of the first `k` candidates of each prompt.
        let picks = |scores: &[f64], k: usize| -> Vec<usize> {
            (0..prompts.len())
                .map(|i| (i * n..i * n + k).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(i * n))
                .collect()
        };
        // Proxy scores of the SFT samples (candidate 0 of each prompt) anchor the calibration.
        let first: Vec<usize> = (0..prompts.len()).map(|i| i * n).collect();
        let mut overopt = Vec::new();
        for (name, scores) in
            [("single RM", &single), (&*format!("ensemble of {} (mean − {lambda}·var)", members.len()), &ensemble)]
        {
            let ref_proxy: Vec<f64> = first.iter().map(|&j| scores[j]).collect();
            let ref_gold: Vec<f64> = first.iter().map(|&j| cand_gold[j]).collect();
            let mut points = Vec::new();
            let mut k = 1;
            while k <= n {
                let pk = picks(scores, k);
                let g: Vec<f64> = pk.iter().map(|&j| cand_gold[j]).collect();
                let px: Vec<f64> = pk.iter().map(|&j| scores[j]).collect();
                points.push(OverOptPoint {
                    kl: metrics::best_of_n_kl(k),
                    gold: metrics::mean(&g),
                    proxy: metrics::mean(&metrics::calibrate(&px, &ref_proxy, &ref_gold)),
                });
                k *= 2;
            }
            overopt.push(OverOptCurve { name: format!("best-of-n, {name}"), points });
        }
        let picks: Vec<String> = picks(&ensemble, n).into_iter().map(|j| flat[j].1.clone()).collect();
        Ok(BestOfN { n, picks, curves: overopt })
    }
}

/// Every policy's answers to the test prompts and its row of the methods table: gold, win rate
/// against SFT, KL to SFT, and the proxy (ensemble mean) with its gap to gold. SFT's answers,
/// the first row, are the baseline of the win rates and of the proxy–gold gap.
pub struct Scoreboard {
    pub prompts: Vec<Prompt>,
    pub rows: Vec<MethodRow>,
    /// Each method's answers, in the order of `rows` after SFT.
    pub outputs: Vec<(String, Vec<String>)>,
    pub sft: Evaluation,
    sft_proxy: Vec<f64>,
}

/// The gold score of each answer to its prompt.
fn gold_of(cx: &Session, prompts: &[Prompt], outs: &[String]) -> Vec<f64> {
    prompts.iter().zip(outs).map(|(p, o)| cx.lab.gold.score(&p.text, o)).collect()
}

/// `(prompt, answer)` items for scoring by reward models.
fn items_of(prompts: &[Prompt], outs: &[String]) -> Vec<(String, String)> {
    prompts.iter().zip(outs).map(|(p, o)| (p.text.clone(), o.clone())).collect()
}

impl Scoreboard {
    /// Adds a method's row from its answers (`kl`: its KL to SFT) and keeps the answers.
    pub fn add(&mut self, cx: &Session, members: &[Model], name: &str, outs: Vec<String>, kl: f64) -> Result<()> {
        let g = gold_of(cx, &self.prompts, &outs);
        let px = cx.score_mean(members, &items_of(&self.prompts, &outs))?;
        self.rows.push(MethodRow {
            name: name.to_string(),
            mean_gold: metrics::mean(&g),
            gold_win_rate_vs_sft: metrics::win_rate(&g, &self.sft.gold),
            kl_to_ref: kl,
            mean_proxy: Some(metrics::mean(&px)),
            proxy_gold_gap: Some(metrics::proxy_gold_gap(&px, &g, &self.sft_proxy, &self.sft.gold)),
        });
        self.outputs.push((name.to_string(), outs));
        Ok(())
    }
}

impl Session<'_> {
    /// Stage *evaluation, SFT*: the SFT policy answers `cfg.eval.n_prompts` test prompts once
    /// each; gold and proxy (ensemble mean) of its answers start the scoreboard.
    pub fn scoreboard(&mut self, base: &Base, members: &[Model]) -> Result<Scoreboard> {
        let prompts = self.lab.world.prompts(Split::Test, self.cfg.eval.n_prompts);
        self.progress.stage("evaluating SFT", 1);
        let outs: Vec<String> =
            self.sample_eval(&base.sft, &prompts, 1, 3)?.into_iter().map(|mut v| v.remove(0)).collect();
        self.progress.tick("done");
        let gold = gold_of(self, &prompts, &outs);
        let sft_proxy = self.score_mean(members, &items_of(&prompts, &outs))?;
        let rows = vec![MethodRow {
            name: "SFT".into(),
            mean_gold: metrics::mean(&gold),
            gold_win_rate_vs_sft: 0.5,
            kl_to_ref: 0.0,
            mean_proxy: Some(metrics::mean(&sft_proxy)),
            proxy_gold_gap: Some(0.0),
        }];
        Ok(Scoreboard { prompts, rows, outputs: Vec::new(), sft: Evaluation { outs, gold, kl: 0.0 }, sft_proxy })
    }

    /// Stage *evaluation* of one policy: its answers to the scoreboard's prompts (sampling
    /// stream `salt`), its KL to SFT, and its row.
    pub fn score_policy(
        &mut self,
        board: &mut Scoreboard,
        base: &Base,
        members: &[Model],
        name: &str,
        policy: &Model,
        salt: u64,
    ) -> Result<()> {
        let prompts = board.prompts.clone();
        let e = self.evaluate(name, policy, base, &prompts, salt)?;
        board.add(self, members, name, e.outs, e.kl)
    }
}
