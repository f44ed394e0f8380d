//! Contrast Instructions with known gold answers (Shen et al., arXiv:2309.16155; research note
//! reward_modeling §2(d)): two prompts of the world that differ in one word and have different
//! correct answers — "What is 17 + 25?" and "What is 17 + 26?", "What is the capital of Peru?"
//! and "What is the capital of Chile?" — each with its own correct answer written in one
//! canonical sentence. The two answers differ only in the answer word, so gold ranks each
//! prompt's own answer above the other's on correctness alone: gold's response and instruction
//! consistency are 100 % by construction (a test checks it on every item).
//!
//! Only the task kinds with a single correct answer make items (arithmetic, capitals,
//! opposites, animal sounds): a list or a greeting has no one answer word to swap.

use rand::seq::SliceRandom;
use serde::Serialize;

use crate::rng::stream;
use crate::tasks::{all_prompts, Task, TaskKind};
use crate::{Prompt, Split, World};

/// The task kinds that make contrast items.
pub const CONTRAST_KINDS: [TaskKind; 4] =
    [TaskKind::Arithmetic, TaskKind::Capital, TaskKind::Opposite, TaskKind::AnimalSound];

/// One contrast item: `(I1, R1)` and `(I2, R2)`, each answer the correct one for its prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContrastItem {
    pub first: Prompt,
    pub second: Prompt,
    pub first_answer: String,
    pub second_answer: String,
}

impl ContrastItem {
    /// The four `(prompt, response)` combinations in the order
    /// `(I1,R1), (I1,R2), (I2,R1), (I2,R2)` that
    /// [`reins_train::consistency::ConsistencyReport::from_scores`] reads.
    pub fn queries(&self) -> [(String, String); 4] {
        let (i1, i2) = (&self.first.text, &self.second.text);
        let (r1, r2) = (&self.first_answer, &self.second_answer);
        [(i1.clone(), r1.clone()), (i1.clone(), r2.clone()), (i2.clone(), r1.clone()), (i2.clone(), r2.clone())]
    }
}

/// The task's correct answer in one neutral sentence of the world's own phrasing, or `None` for
/// a kind with no single answer word.
pub fn correct_answer(task: &Task) -> Option<String> {
    match task {
        Task::Arithmetic { .. } => task.value().map(|v| format!("The answer is {v}.")),
        Task::Capital { .. } => task.answer_word().map(|c| format!("It is {c}.")),
        Task::Opposite { .. } => task.answer_word().map(|w| format!("It is {w}.")),
        Task::AnimalSound { .. } => task.answer_word().map(|s| format!("It says {s}.")),
        Task::List { .. } | Task::Greeting { .. } => None,
    }
}

/// Every prompt of the world (any split) that differs from `p` in exactly one whitespace-separated
/// word, is of the same kind and has a different correct answer.
pub fn partners(p: &Prompt) -> Vec<Prompt> {
    let Some(answer) = correct_answer(&p.task) else { return Vec::new() };
    let words: Vec<&str> = p.text.split_whitespace().collect();
    all_prompts()
        .iter()
        .filter(|(text, task)| {
            let other: Vec<&str> = text.split_whitespace().collect();
            task.kind() == p.task.kind()
                && other.len() == words.len()
                && other.iter().zip(&words).filter(|(a, b)| a != b).count() == 1
                && correct_answer(task).is_some_and(|a| a != answer)
        })
        .map(|(text, task)| Prompt { text: text.clone(), task: task.clone() })
        .collect()
}

/// Up to `n` contrast items whose first prompt is a prompt of `split` (its partner may come from
/// any split), drawn on the stream `"contrast items"` of the world's seed: each kind's candidate
/// items are shuffled and the kinds take turns, so a kind with few prompts (animal sounds) is
/// not crowded out by arithmetic. An unordered pair of prompts makes at most one item.
pub fn contrast_items(world: &World, split: Split, n: usize) -> Vec<ContrastItem> {
    let mut rng = stream(world.seed(), "contrast items");
    let mut by_kind: Vec<Vec<ContrastItem>> = CONTRAST_KINDS
        .iter()
        .map(|kind| {
            let mut seen = std::collections::BTreeSet::new();
            let mut items = Vec::new();
            for p in world.all(split).filter(|p| p.task.kind() == *kind) {
                for q in partners(p) {
                    let key = if p.text < q.text {
                        (p.text.clone(), q.text.clone())
                    } else {
                        (q.text.clone(), p.text.clone())
                    };
                    if !seen.insert(key) {
                        continue;
                    }
                    if let (Some(r1), Some(r2)) = (correct_answer(&p.task), correct_answer(&q.task)) {
                        items.push(ContrastItem { first: p.clone(), second: q, first_answer: r1, second_answer: r2 });
                    }
                }
            }
            items.shuffle(&mut rng);
            items.reverse(); // taken from the back: the shuffled order, first to last
            items
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n && by_kind.iter().any(|k| !k.is_empty()) {
        for kind in by_kind.iter_mut() {
            if out.len() < n {
                if let Some(item) = kind.pop() {
                    out.push(item);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gold::compare_scores;
    use crate::GoldReward;
    use reins_train::consistency::ConsistencyReport;
    use std::cmp::Ordering;

    #[test]
    fn the_papers_examples_are_partners() {
        let find = |t: &str| {
            all_prompts().iter().find(|(p, _)| p == t).map(|(p, task)| Prompt { text: p.clone(), task: task.clone() })
        };
        let sum = find("What is 17 + 5?").unwrap();
        let texts: Vec<String> = partners(&sum).into_iter().map(|p| p.text).collect();
        assert!(texts.contains(&"What is 17 + 6?".to_string()), "{texts:?}");
        assert!(texts.contains(&"What is 17 - 5?".to_string()), "{texts:?}");
        // Same answer (5 + 17) or a different template: not partners.
        assert!(!texts.contains(&"What is 5 + 17?".to_string()) && !texts.contains(&"What is 17 plus 5?".to_string()));
        let peru = find("What is the capital of Peru?").unwrap();
        let caps = partners(&peru);
        assert_eq!(caps.len(), 21, "every other country, same template");
        assert!(caps.iter().all(|p| p.text.starts_with("What is the capital of ")));
        assert_eq!(correct_answer(&peru.task).as_deref(), Some("It is Lima."));
        assert!(partners(&find("List three colors.").unwrap()).is_empty());
    }

    /// Gold is 100 % consistent on every item, both ways, and strictly (no ties).
    #[test]
    fn gold_is_fully_consistent_by_construction() {
        let gold = GoldReward::default();
        for seed in 0..3 {
            let w = World::new(seed, &crate::WorldConfig::default()).unwrap();
            let items = contrast_items(&w, Split::Test, 500);
            assert_eq!(items.len(), 500, "seed {seed}");
            let scores: Vec<[f64; 4]> = items.iter().map(|it| it.queries().map(|(p, r)| gold.score(&p, &r))).collect();
            let rep = ConsistencyReport::from_scores(&scores);
            assert_eq!(rep.response.rate(), 1.0, "seed {seed}");
            assert_eq!(rep.instruction.rate(), 1.0, "seed {seed}");
            for (it, s) in items.iter().zip(&scores) {
                assert_eq!(compare_scores(s[0], s[1]), Ordering::Greater, "{it:?}");
                assert_eq!(compare_scores(s[3], s[2]), Ordering::Greater, "{it:?}");
                assert!(w.all(Split::Test).any(|p| *p == it.first));
            }
            // Every contrast kind is represented, and no unordered pair twice.
            for kind in CONTRAST_KINDS {
                assert!(items.iter().any(|it| it.first.task.kind() == kind), "seed {seed}: {kind:?}");
            }
            let mut keys: Vec<(String, String)> = items
                .iter()
                .map(|it| {
                    let (a, b) = (it.first.text.clone(), it.second.text.clone());
                    if a < b {
                        (a, b)
                    } else {
                        (b, a)
                    }
                })
                .collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), items.len());
            // Deterministic per seed.
            assert_eq!(contrast_items(&w, Split::Test, 500), items);
        }
    }
}
