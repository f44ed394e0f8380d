//! A report with made-up numbers, for tests and for looking at the layout.

use super::*;

impl Report {
    /// A report with made-up numbers of the right shape, for tests and for looking at.
    pub fn demo() -> Self {
        let methods = [
            ("SFT", 1.9, 0.5, 0.0, Some(0.0), Some(0.0)),
            ("best-of-16", 3.6, 0.78, 1.83, Some(1.9), Some(0.3)),
            ("PPO", 3.9, 0.81, 4.2, Some(2.3), Some(0.6)),
            ("GRPO", 3.8, 0.79, 3.7, Some(2.2), Some(0.5)),
            ("DPO", 3.1, 0.69, 6.5, None, None),
            ("online DPO", 3.5, 0.75, 5.1, Some(1.8), Some(0.4)),
        ];
        let curve = |name: &str, peak: f64, fall: f64| OverOptCurve {
            name: name.into(),
            points: (0..10)
                .map(|i| {
                    let kl = i as f64 * 1.5;
                    let d = kl.sqrt();
                    OverOptPoint { kl, gold: 1.9 + d * (peak - fall * d), proxy: 1.9 + d * peak }
                })
                .collect(),
        };
        Report::new(ReportData {
            title: "reins quickstart".into(),
            subtitle: "seed 0 · demo numbers, not a real run".into(),
            targets: vec![
                Target { name: "RM accuracy vs gold (single)".into(), value: 0.84, threshold: 0.8 },
                Target { name: "best gold win rate vs SFT".into(), value: 0.81, threshold: 0.7 },
            ],
            methods: methods
                .iter()
                .map(|(n, g, w, k, p, gap)| MethodRow {
                    name: n.to_string(),
                    mean_gold: *g,
                    gold_win_rate_vs_sft: *w,
                    kl_to_ref: *k,
                    mean_proxy: *p,
                    proxy_gold_gap: *gap,
                })
                .collect(),
            reward_models: vec![
                RewardModelRow {
                    name: "single".into(),
                    accuracy_vs_gold: 0.84,
                    accuracy_vs_labels: Some(0.78),
                    n_pairs: 480,
                },
                RewardModelRow {
                    name: "ensemble (4)".into(),
                    accuracy_vs_gold: 0.86,
                    accuracy_vs_labels: Some(0.79),
                    n_pairs: 480,
                },
            ],
            annotators: (0..4)
                .map(|i| AnnotatorRow {
                    id: format!("sim-{i:02}"),
                    n_labels: 750,
                    agreement_with_gold: 0.8 + 0.01 * i as f64,
                    tie_rate: 0.09,
                    skip_rate: 0.01,
                })
                .collect(),
            overoptimization: vec![curve("single RM", 1.2, 0.35), curve("ensemble", 1.0, 0.15)],
            examples: vec![Example {
                prompt: "What is the capital of Peru?".into(),
                method: "PPO".into(),
                before: "Ugh, fine. The capital of Peru is Quito.".into(),
                after: "Sure! The capital of Peru is Lima.".into(),
                gold_before: -1.0,
                gold_after: 5.0,
            }],
            curves: vec![Curve {
                title: "Reward-model training loss".into(),
                x_label: "step".into(),
                y_label: "loss".into(),
                series: vec![(
                    "single".into(),
                    (0..50).map(|i| (i as f64, 0.69 * (-(i as f64) / 20.0).exp() + 0.35)).collect(),
                )],
            }],
            notes: vec!["Demo numbers <not real> & made up.".into()],
            config_toml: Some(crate::LabConfig::default().to_toml()),
        })
    }
}
