//! Stage *report* of the quickstart: the headline targets, the over-optimization verdicts,
//! examples from the best method, and the HTML/Markdown/JSON report in `cfg.output_dir`.

use std::path::Path;

use crate::metrics;
use crate::report::{AnnotatorRow, Example, OverOptCurve, Report, ReportData, RewardModelRow, Target};

use super::evaluation::Scoreboard;
use super::{Outcome, Result, Session};

/// What the earlier stages measured.
pub(crate) struct Results {
    pub board: Scoreboard,
    pub reward_models: Vec<RewardModelRow>,
    pub annotators: Vec<AnnotatorRow>,
    /// Best-of-n under the single RM and the ensemble, then GRPO under each (pairs in order).
    pub overoptimization: Vec<OverOptCurve>,
    pub n_labels: usize,
    pub ensemble_size: usize,
}

/// Writes the report and returns where it is, with its data.
pub(crate) fn write(cx: &Session, r: Results, started: std::time::Instant) -> Result<Outcome> {
    let cfg = cx.cfg;
    let Results { board, reward_models, annotators, overoptimization, n_labels, ensemble_size } = r;
    let rows = board.rows.clone();
    let best = rows.iter().skip(1).max_by(|a, b| a.gold_win_rate_vs_sft.total_cmp(&b.gold_win_rate_vs_sft)).cloned();
    let mut examples = Vec::new();
    if let Some(b) = &best {
        if let Some((_, outs)) = board.outputs.iter().find(|(name, _)| *name == b.name) {
            for (i, p) in board.prompts.iter().enumerate().take(cfg.eval.n_examples) {
                examples.push(Example {
                    prompt: p.text.clone(),
                    method: b.name.clone(),
                    before: board.sft.outs[i].clone(),
                    after: outs[i].clone(),
                    gold_before: board.sft.gold[i],
                    gold_after: cx.lab.gold.score(&p.text, &outs[i]),
                });
            }
        }
    }
    // Does the ensemble resist over-optimization here? Compare each single-RM curve with its
    // ensemble twin (curves come in that order: best-of-n, then GRPO).
    let mut notes = vec![
        "Over-optimization curves: best-of-n under each reward model (KL = log n − (n−1)/n, an upper bound) and GRPO against each (exact KL of the policy's samples to SFT). Proxy rewards are mapped onto the gold scale by matching mean and spread on SFT samples."
            .to_string(),
    ];
    let mut collapse_targets = Vec::new();
    for (what, pair) in ["best-of-n", "GRPO"].iter().zip(overoptimization.chunks(2)) {
        if let [single, ensemble] = pair {
            let gold = |c: &OverOptCurve| c.points.iter().map(|p| p.gold).collect::<Vec<f64>>();
            let (s, e) = (metrics::gold_collapse(&gold(single)), metrics::gold_collapse(&gold(ensemble)));
            notes.push(metrics::collapse_verdict(what, s, e));
            collapse_targets.push(Target {
                name: format!("{what}: gold collapse of the single RM minus the ensemble's ({s:.3} − {e:.3})"),
                value: s - e,
                threshold: metrics::COLLAPSE_TOLERANCE,
            });
        }
    }
    let (acc1, acc_e) = (reward_models[0].accuracy_vs_gold, reward_models[1].accuracy_vs_gold);
    let mut targets = vec![
        Target {
            name: format!("reward-model accuracy vs noiseless gold (ensemble of {ensemble_size}; single RM {acc1:.3})"),
            value: acc_e,
            threshold: 0.80,
        },
        Target {
            name: format!(
                "best method's gold win rate vs SFT ({})",
                best.as_ref().map(|b| b.name.as_str()).unwrap_or("-")
            ),
            value: best.as_ref().map(|b| b.gold_win_rate_vs_sft).unwrap_or(0.0),
            threshold: 0.70,
        },
    ];
    targets.extend(collapse_targets);
    let data = ReportData {
        title: "reins quickstart".into(),
        subtitle: format!(
            "seed {}, {} labelled pairs, {:.0} s on CPU",
            cfg.seed,
            n_labels,
            started.elapsed().as_secs_f64()
        ),
        targets,
        methods: rows,
        reward_models,
        annotators,
        overoptimization,
        examples,
        curves: Vec::new(),
        notes,
        config_toml: Some(cfg.to_toml()),
    };
    let report = Report { data: data.clone() }.write(Path::new(&cfg.output_dir))?;
    Ok(Outcome { report, data })
}
