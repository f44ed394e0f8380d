//! Control tags (research note §0): prompts behind a "better" or a "worse" instruction, answered
//! by responses of a good or a bad quality mix, so a tiny model learns what each instruction does
//! to its answer — the ability T-REG's contrastive prompting reads its token rewards from.

use crate::config::QualityMix;
use crate::{chat, Split, World};

/// Put before a prompt to ask for a good answer.
pub const BETTER: &str = "Answer well: ";
/// Put before a prompt to ask for a bad answer.
pub const WORSE: &str = "Answer badly: ";

/// `n` prompts of the train split, each twice: behind [`BETTER`] with a response of
/// [`QualityMix::good`], behind [`WORSE`] with one of [`QualityMix::bad`]; `(prompt, completion)`
/// in the lab's chat format. Deterministic in `seed`.
pub fn examples(world: &World, n: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = crate::rng::stream(seed, "control-tags");
    let (good, bad) = (QualityMix::good(), QualityMix::bad());
    let mut out = Vec::with_capacity(2 * n);
    for p in world.prompts_with(Split::Train, n, &mut rng) {
        for (tag, mix) in [(BETTER, &good), (WORSE, &bad)] {
            let r = world.sample_response(&p, &mut rng, mix);
            out.push((chat::prompt(&format!("{tag}{}", p.text)), chat::completion(&r.text)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_prompt_comes_behind_both_tags_with_a_good_and_a_bad_answer() {
        let cfg = crate::LabConfig::reduced();
        let world = World::new(3, &cfg.world).unwrap();
        let gold = crate::GoldReward::new(cfg.gold.clone());
        let ex = examples(&world, 40, 1);
        assert_eq!(ex.len(), 80);
        assert_eq!(ex, examples(&world, 40, 1), "deterministic");
        let (mut better, mut worse) = (0.0, 0.0);
        for pair in ex.chunks(2) {
            assert!(pair[0].0.starts_with(&format!("{} {BETTER}", chat::USER)), "{}", pair[0].0);
            assert!(pair[1].0.starts_with(&format!("{} {WORSE}", chat::USER)), "{}", pair[1].0);
            let text = |p: &str| p.trim_start_matches(chat::USER).trim_end_matches(chat::ASSISTANT).trim().to_string();
            let question = text(&pair[0].0).trim_start_matches(BETTER.trim_end()).trim().to_string();
            assert_eq!(text(&pair[1].0).trim_start_matches(WORSE.trim_end()).trim(), question);
            let answer = |c: &str| chat::extract_response(c).0;
            better += gold.score(&question, &answer(&pair[0].1));
            worse += gold.score(&question, &answer(&pair[1].1));
        }
        assert!(better > worse + 40.0, "good answers score higher under gold: {better} vs {worse}");
    }
}
