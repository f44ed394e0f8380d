use super::*;
use crate::config::{LabConfig, QualityMix, WorldConfig};
use crate::rng::LabRng;
use crate::world::{Split, World};
use rand::SeedableRng;
use reins_train::judges::tournament;

/// (prompt, a, b) pairs like the pipeline's: two samples per prompt from the SFT-like mix.
fn pairs(n: usize) -> Vec<(String, String, String)> {
    let w = World::new(5, &WorldConfig::default()).unwrap();
    w.sample_pairs(Split::Train, n, &QualityMix::sft())
}

fn run(judge: &SimulatedAnnotator, pairs: &[(String, String, String)], seed: u64) -> (Agreement, f64) {
    let gold = GoldReward::default();
    let mut rng = LabRng::seed_from_u64(seed);
    let mut agr = Agreement::default();
    let mut expected = 0.0;
    for (p, a, b) in pairs {
        let l = judge.label(p, a, b, &mut rng);
        agr.add(&gold, p, a, b, &l);
        if matches!(l.outcome, Outcome::A | Outcome::B) {
            let g = gold.gold_prefers(p, a, b);
            if g != std::cmp::Ordering::Equal {
                let pr = judge.probabilities(p, a, b);
                expected += if g == std::cmp::Ordering::Greater { pr.a } else { pr.b };
            }
        }
    }
    (agr.clone(), expected / agr.decided.max(1) as f64)
}

#[test]
fn noiseless_annotator_agrees_with_gold_everywhere() {
    let ps = pairs(2000);
    let oracle = SimulatedAnnotator::oracle("o", FactorWeights::default());
    let (agr, _) = run(&oracle, &ps, 1);
    assert!(agr.decided > 1000, "{agr:?}");
    assert_eq!(agr.agree, agr.decided, "{agr:?}");
    assert_eq!(agr.skips, 0);
    let gold = GoldReward::default();
    let mut rng = LabRng::seed_from_u64(0);
    for (p, a, b) in &ps {
        let want = match gold.gold_prefers(p, a, b) {
            std::cmp::Ordering::Greater => Outcome::A,
            std::cmp::Ordering::Less => Outcome::B,
            std::cmp::Ordering::Equal => Outcome::Tie,
        };
        if want != Outcome::Tie {
            assert_eq!(oracle.label(p, a, b, &mut rng).outcome, want);
            assert_eq!(gold.label(p, a, b).outcome, want);
        }
    }
}

#[test]
fn mistakes_alone_give_agreement_one_minus_epsilon() {
    let ps = pairs(4000);
    let mut a = SimulatedAnnotator::oracle("m", FactorWeights::default());
    a.p_mistake = 0.2;
    let (agr, expected) = run(&a, &ps, 2);
    assert!((expected - 0.8).abs() < 1e-12);
    let n = agr.decided as f64;
    let sd = (0.8 * 0.2 / n).sqrt();
    println!("mistake-only annotator (eps 0.2): observed {:.3}, expected 0.800, n {n}", agr.rate());
    assert!((agr.rate() - 0.8).abs() < 4.0 * sd, "{} vs 0.8 (n={n})", agr.rate());
}

#[test]
fn stochastic_myopic_annotator_matches_its_expected_agreement() {
    let ps = pairs(4000);
    let mut a = SimulatedAnnotator::new("s", FactorWeights::default(), &crate::AnnotatorConfig::default());
    a.skip_threshold = f64::NEG_INFINITY;
    a.equal_threshold = 0.0;
    let (agr, expected) = run(&a, &ps, 3);
    let n = agr.decided as f64;
    let sd = (expected * (1.0 - expected) / n).sqrt();
    println!("default-noise annotator, no skip/tie: observed {:.3}, expected {expected:.3}, n {n}", agr.rate());
    assert!((agr.rate() - expected).abs() < 4.0 * sd, "{} vs {expected}", agr.rate());
    assert!(expected > 0.6 && expected < 0.98, "{expected}");
}

#[test]
fn skips_and_ties_happen_exactly_where_configured() {
    let ps = pairs(1500);
    let mut a = SimulatedAnnotator::oracle("t", FactorWeights::default());
    a.skip_threshold = 0.5;
    a.equal_threshold = 0.6;
    let mut rng = LabRng::seed_from_u64(4);
    let (mut skips, mut ties) = (0, 0);
    for (p, x, y) in &ps {
        let l = a.label(p, x, y, &mut rng);
        let (ux, uy) = (a.utilities(p, x).0, a.utilities(p, y).0);
        let both_bad = ux.max(uy) < 0.5;
        assert_eq!(l.outcome == Outcome::Skip, both_bad, "{x} / {y}");
        if !both_bad {
            assert_eq!(l.outcome == Outcome::Tie, (ux - uy).abs() < 0.6, "{x} / {y}");
        }
        skips += usize::from(l.outcome == Outcome::Skip);
        ties += usize::from(l.outcome == Outcome::Tie);
    }
    assert!(skips > 10 && ties > 10, "skips {skips} ties {ties}");
    a.skip_threshold = f64::NEG_INFINITY;
    a.equal_threshold = 0.0;
    let mut rng = LabRng::seed_from_u64(4);
    assert!(ps.iter().all(|(p, x, y)| !matches!(a.label(p, x, y, &mut rng).outcome, Outcome::Skip)));
}

#[test]
fn myopia_overweights_the_end() {
    let mut a = SimulatedAnnotator::oracle("y", FactorWeights::default());
    a.gamma = 0.5;
    let p = "What is 7 + 5?";
    // Same evidence; politeness at the end vs at the start.
    let polite_end = "7 + 5 is 12. Hope this helps!";
    let polite_start = "Sure! 7 + 5 is 12.";
    let (u_end, m_end) = a.utilities(p, polite_end);
    let (u_start, m_start) = a.utilities(p, polite_start);
    assert_eq!(u_end, u_start);
    assert!(m_end < m_start, "the answer sits earlier in `polite_end`, so it counts less");
    let rude_end = "7 + 5 is 12. Whatever.";
    let rude_start = "Whatever. 7 + 5 is 12.";
    assert!(a.utilities(p, rude_end).1 < a.utilities(p, rude_start).1);
    let mut rng = LabRng::seed_from_u64(0);
    assert_eq!(a.label(p, rude_start, rude_end, &mut rng).outcome, Outcome::A);
}

#[test]
fn population_is_deterministic_disagrees_and_keeps_ids() {
    let cfg = LabConfig::default();
    let pop = Population::new(&cfg.annotators, &cfg.gold, 9);
    assert_eq!(pop, Population::new(&cfg.annotators, &cfg.gold, 9));
    assert_ne!(pop, Population::new(&cfg.annotators, &cfg.gold, 10));
    let ids: Vec<_> = pop.annotators.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids[0], "sim-00");
    assert_eq!(ids.len(), 8);
    let mut bigger = cfg.annotators.clone();
    bigger.n_annotators = 12;
    assert_eq!(Population::new(&bigger, &cfg.gold, 9).annotators[..8], pop.annotators[..]);
    assert!(pop.annotators.windows(2).all(|w| w[0].factor_weights != w[1].factor_weights));
    let ps = pairs(300);
    let label_all = |seed| {
        let mut rng = LabRng::seed_from_u64(seed);
        ps.iter().map(|(p, a, b)| pop.label(p, a, b, &mut rng)).collect::<Vec<_>>()
    };
    let labels = label_all(1);
    assert_eq!(labels, label_all(1));
    let used: std::collections::HashSet<_> = labels.iter().map(|l| l.annotator_id.clone()).collect();
    assert_eq!(used.len(), 8);
    // Oracles with different weights really disagree on some pairs.
    let o0 = SimulatedAnnotator::oracle("0", pop.annotators[0].factor_weights.clone());
    let o1 = SimulatedAnnotator::oracle("1", pop.annotators[1].factor_weights.clone());
    let mut rng = LabRng::seed_from_u64(0);
    let disagree = ps
        .iter()
        .filter(|(p, a, b)| o0.label(p, a, b, &mut rng).outcome != o1.label(p, a, b, &mut rng).outcome)
        .count();
    assert!(disagree > 0);
}

#[test]
fn records_serialize_to_trl_preference_jsonl() {
    let a = SimulatedAnnotator::oracle("sim-03", FactorWeights::default());
    let p = "What is 7 + 5?";
    let mut rng = LabRng::seed_from_u64(0);
    let l = a.label(p, "7 + 5 is 13.", "7 + 5 is 12.", &mut rng);
    let r = l.to_record(p, "7 + 5 is 13.", "7 + 5 is 12.", false).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
    assert_eq!(v["prompt"], p);
    assert_eq!(v["chosen"], "7 + 5 is 12.");
    assert_eq!(v["rejected"], "7 + 5 is 13.");
    assert_eq!(v["annotator_id"], "sim-03");
    assert!(v.get("margin").is_none());
    let m = l.to_record(p, "7 + 5 is 13.", "7 + 5 is 12.", true).unwrap();
    assert!((m.margin.unwrap() - 3.0).abs() < 1e-9);
    let c = r.to_chat();
    assert_eq!(c.prompt.clone() + &c.chosen, crate::chat::full(p, "7 + 5 is 12."));
    let tie = Label { outcome: Outcome::Tie, ..l };
    assert!(tie.to_record(p, "x", "y", false).is_none());
}

/// The numbers quoted in the lab's docs: agreement of the default population with noiseless
/// gold on SFT-like pairs. Run with `--nocapture` to print them.
#[test]
fn default_population_agreement() {
    let cfg = LabConfig::default();
    let pop = Population::new(&cfg.annotators, &cfg.gold, cfg.seed);
    let gold = GoldReward::new(cfg.gold.clone());
    let ps = pairs(4000);
    let mut rng = LabRng::seed_from_u64(11);
    let mut agr = Agreement::default();
    for (p, a, b) in &ps {
        let l = pop.label(p, a, b, &mut rng);
        agr.add(&gold, p, a, b, &l);
    }
    let gold_ties = ps.iter().filter(|(p, a, b)| gold.gold_prefers(p, a, b).is_eq()).count();
    println!(
        "default population: agreement {:.3} on {} decided; ties {:.3}, skips {:.3} of {}; gold ties {:.3}",
        agr.rate(),
        agr.decided,
        agr.ties as f64 / agr.n as f64,
        agr.skips as f64 / agr.n as f64,
        agr.n,
        gold_ties as f64 / ps.len() as f64
    );
    assert!((0.75..0.95).contains(&agr.rate()), "{agr:?}");
    // The ceiling of a reward model fitted perfectly to infinitely many of these labels: the
    // population's majority direction, compared with gold.
    let (mut right, mut counted) = (0, 0);
    for (p, a, b) in &ps {
        let g = gold.gold_prefers(p, a, b);
        if g.is_eq() {
            continue;
        }
        let (mut pa, mut pb) = (0.0, 0.0);
        for ann in &pop.annotators {
            let pr = ann.probabilities(p, a, b);
            pa += pr.a;
            pb += pr.b;
        }
        if pa == pb {
            continue;
        }
        counted += 1;
        right += usize::from((pa > pb) == g.is_gt());
    }
    let ceiling = right as f64 / counted as f64;
    println!("majority-label ceiling vs gold: {ceiling:.3} on {counted} pairs");
    assert!(ceiling > 0.9, "{ceiling}");
    let labels = pop.label_pairs(&ps, &mut LabRng::seed_from_u64(11));
    let rows = pop.agreement_rows(&gold, &ps, &labels);
    assert_eq!(rows.len(), 9);
    assert_eq!(rows[8].id, "all");
    assert_eq!(rows[8].n_labels, 4000);
    assert_eq!(rows[..8].iter().map(|r| r.n_labels).sum::<usize>(), 4000);
    for r in &rows {
        println!(
            "  {} n={} agreement {:.3} ties {:.3} skips {:.3}",
            r.id, r.n_labels, r.agreement_with_gold, r.tie_rate, r.skip_rate
        );
    }
}

#[test]
fn tournament_picks_gold_best_and_worst_with_a_noiseless_judge() {
    let gold = GoldReward::default();
    let p = "What is 7 + 5?";
    let cands: Vec<String> = ["Whatever. It is 13.", "Sure! 7 + 5 is 12.", "It is 12.", "The pig says oink."]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rng = LabRng::seed_from_u64(0);
    let s = tournament::<str, _>(&gold, p, &cands, &mut rng).unwrap();
    assert_eq!(s.best, 1, "{:?}", s.wins);
    assert_eq!(s.worst, 3, "off-topic scores 0, below rude-and-wrong (0.5): {:?}", s.wins);
    let pop = Population::new(&LabConfig::default().annotators, &FactorWeights::default(), 0);
    let s = tournament::<str, _>(&pop, p, &cands, &mut rng).unwrap();
    assert!(s.best < cands.len() && s.worst < cands.len());
}

/// The spurious length knob: `length_bias · words` on each utility, by hand; at 0 the config
/// file (and so every registered experiment's config hash) is as before.
#[test]
fn length_bias_adds_utility_per_word_and_is_absent_from_the_config_at_zero() {
    let cfg = AnnotatorConfig { length_bias: 0.25, ..AnnotatorConfig::oracle() };
    let biased = SimulatedAnnotator::new("b", FactorWeights::default(), &cfg);
    let plain = SimulatedAnnotator::oracle("o", FactorWeights::default());
    let (p, answer) = ("What is 2 + 3?", "It is 5, my friend.");
    let (u, m) = plain.utilities(p, answer);
    let (ub, mb) = biased.utilities(p, answer);
    assert!((ub - u - 1.25).abs() < 1e-12 && (mb - m - 1.25).abs() < 1e-12, "5 words × 0.25: {u} {ub}");
    let text = toml::to_string(&LabConfig::default()).unwrap();
    assert!(!text.contains("length_bias"), "{text}");
    let mut with = LabConfig::default();
    with.annotators.base.length_bias = f64::NAN;
    assert!(with.validate().is_err());
}
