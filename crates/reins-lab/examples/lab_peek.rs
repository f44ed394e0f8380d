//! Prints a few prompts, responses, gold scores and labels of the default world.
//! `cargo run -p reins-lab --example lab_peek`

use reins_lab::config::{LabConfig, QualityMix};
use reins_lab::{GoldReward, Population, Split, World};

fn main() {
    let cfg = LabConfig::default();
    let world = World::new(cfg.seed, &cfg.world).expect("default config is valid");
    let gold = GoldReward::new(cfg.gold.clone());
    let pop = Population::new(&cfg.annotators, &cfg.gold, cfg.seed);
    let mut rng = world.rng("peek");
    for p in world.prompts(Split::Train, 12) {
        let a = world.sample_response(&p, &mut rng, &QualityMix::sft());
        let b = world.sample_response(&p, &mut rng, &QualityMix::sft());
        let l = pop.label(&p.text, &a.text, &b.text, &mut rng);
        println!(
            "{}\n  A {:+.2} {}\n  B {:+.2} {}\n  -> {:?} by {}",
            p.text,
            gold.score(&p.text, &a.text),
            a.text,
            gold.score(&p.text, &b.text),
            b.text,
            l.outcome,
            l.annotator_id
        );
    }
}
