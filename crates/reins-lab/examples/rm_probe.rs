//! Is the default annotators' signal learnable? Trains a linear Bradley–Terry reward model on
//! hashed text features from the population's labels (world pairs, train prompts), then
//! measures its accuracy against noiseless gold on held-out pairs.
//! `cargo run --release -p reins-lab --example rm_probe`

use reins_lab::config::{LabConfig, QualityMix};
use reins_lab::metrics::gold_pair_accuracy;
use reins_lab::rng::fnv1a;
use reins_lab::{Lab, Outcome, Split};

const DIM: usize = 1 << 18;

fn features(prompt: &str, response: &str) -> Vec<usize> {
    let norm = |s: &str| -> Vec<String> {
        s.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()).collect()
    };
    let (p, r) = (norm(prompt), norm(response));
    let mut f = vec![0];
    let h = |s: String| fnv1a(s.as_bytes()) as usize % DIM;
    for (i, w) in r.iter().enumerate() {
        f.push(h(format!("u:{w}")));
        if i > 0 {
            f.push(h(format!("b:{}_{w}", r[i - 1])));
        }
        for q in &p {
            f.push(h(format!("x:{q}_{w}")));
        }
    }
    f.push(h(format!("len:{}", r.len().min(40))));
    f
}

fn score(w: &[f64], f: &[usize]) -> f64 {
    f.iter().map(|i| w[*i]).sum()
}

fn main() {
    let cfg = LabConfig::default();
    let lab = Lab::new(&cfg).expect("valid");
    let gold_judge =
        reins_lab::Population { annotators: vec![reins_lab::SimulatedAnnotator::oracle("gold", cfg.gold.clone())] };
    for (who, n_train) in [("annotators", 3000usize), ("annotators", 10000), ("gold", 3000), ("gold", 10000)] {
        let judge = if who == "gold" { &gold_judge } else { &lab.population };
        let train = lab.world.sample_pairs(Split::Train, n_train, &QualityMix::sft());
        let labels = judge.label_pairs(&train, &mut lab.world.rng("probe-labels"));
        let mut data = Vec::new();
        for ((p, a, b), l) in train.iter().zip(&labels) {
            let (c, r) = match l.outcome {
                Outcome::A => (a, b),
                Outcome::B => (b, a),
                _ => continue,
            };
            data.push((features(p, c), features(p, r)));
        }
        let mut w = vec![0.0; DIM];
        let lr = 0.02;
        for _ in 0..5 {
            for (c, r) in &data {
                let m = score(&w, c) - score(&w, r);
                let g = 1.0 / (1.0 + m.exp()); // d/dm of log σ(m)
                for i in c {
                    w[*i] += lr * g;
                }
                for i in r {
                    w[*i] -= lr * g;
                }
            }
        }
        let test = lab.world.sample_pairs(Split::Dev, 2000, &QualityMix::sft());
        let ra: Vec<f64> = test.iter().map(|(p, a, _)| score(&w, &features(p, a))).collect();
        let rb: Vec<f64> = test.iter().map(|(p, _, b)| score(&w, &features(p, b))).collect();
        let (acc, n) = gold_pair_accuracy(&lab.gold, &test, &ra, &rb);
        for kind in reins_lab::tasks::TaskKind::ALL {
            let idx: Vec<usize> = (0..test.len())
                .filter(|i| reins_lab::tasks::parse_prompt(&test[*i].0).map(|t| t.kind()) == Some(kind))
                .collect();
            let sub: Vec<_> = idx.iter().map(|i| test[*i].clone()).collect();
            let (a, n) = gold_pair_accuracy(
                &lab.gold,
                &sub,
                &idx.iter().map(|i| ra[*i]).collect::<Vec<_>>(),
                &idx.iter().map(|i| rb[*i]).collect::<Vec<_>>(),
            );
            print!("{kind:?} {a:.2} ({n})  ");
        }
        println!();
        println!(
            "{who}: {n_train} labelled pairs ({} decided): linear RM accuracy vs gold on {n} held-out pairs = {acc:.3}",
            data.len()
        );
    }
}
