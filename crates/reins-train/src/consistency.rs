//! Reward consistency on Contrast Instructions (Shen et al., "The Trickle-down Impact of Reward
//! (In-)consistency on RLHF", arXiv:2309.16155).
//!
//! A Contrast Instructions item is two lexically similar instructions `I1, I2` whose preferred
//! responses `R1, R2` differ. A consistent reward model ranks the matching combination above
//! the mixed ones:
//! - *response consistency*: `r(I1, R1) > r(I1, R2)` and `r(I2, R2) > r(I2, R1)` (the right
//!   response for a fixed instruction);
//! - *instruction consistency*: `r(I1, R1) > r(I2, R1)` and `r(I2, R2) > r(I1, R2)` (the right
//!   instruction for a fixed response).
//!
//! The paper's own benchmark sets are not available, so [`contrast_items`] builds the items
//! from any preference set: each prompt is paired with its nearest *other* prompt by word
//! Jaccard similarity, kept when the similarity is at least τ. Ties in a comparison count as
//! inconsistent (the comparisons are strict), so a constant reward scores 0, not 0.5.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::{Result, TrainError};

/// The words of a prompt as the pairing sees them: maximal runs of alphanumeric characters,
/// lowercased, as a set (so "What is 17+25?" is {what, is, 17, 25}). Words, not tokenizer ids,
/// so that τ means the same thing for every reward model.
pub fn word_set(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Jaccard similarity `|A ∩ B| / |A ∪ B|`; 0 when both sets are empty.
pub fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let inter = a.intersection(b).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// One Contrast Instructions item: indices into the preference set of the two records whose
/// (prompt, preferred response) give `(I1, R1)` and `(I2, R2)`; `first < second`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ContrastItem {
    pub first: usize,
    pub second: usize,
    /// Word Jaccard similarity of the two prompts.
    pub similarity: f64,
}

impl ContrastItem {
    /// The four (prompt of, response of) record indices to score, in the order
    /// `(I1,R1), (I1,R2), (I2,R1), (I2,R2)` that [`ConsistencyReport::from_scores`] reads.
    pub fn queries(&self) -> [(usize, usize); 4] {
        let (a, b) = (self.first, self.second);
        [(a, a), (a, b), (b, a), (b, b)]
    }
}

/// Contrast items from preference records given as `(prompt, preferred response)` texts.
///
/// Each record `i` is paired with the record `j ≠ i` of highest prompt similarity (ties: the
/// lowest `j`) among those with a different prompt text and a different preferred response
/// (identical ones would make the comparisons ties, not tests); the pair is kept when the
/// similarity is at least `tau`. A pair found from both ends is one item. Items come sorted by
/// `(first, second)`, so the output does not depend on anything but the input order.
pub fn contrast_items(records: &[(String, String)], tau: f64) -> Result<Vec<ContrastItem>> {
    if !(tau > 0.0 && tau <= 1.0) {
        return Err(TrainError::Config(format!(
            "consistency: the similarity threshold τ must lie in (0, 1] (got {tau}); 0.5 keeps prompts that share \
             half their words"
        )));
    }
    let words: Vec<BTreeSet<String>> = records.iter().map(|(p, _)| word_set(p)).collect();
    let mut pairs = BTreeSet::new();
    let mut sims = std::collections::BTreeMap::new();
    for i in 0..records.len() {
        let mut best: Option<(usize, f64)> = None;
        for j in 0..records.len() {
            if j == i || records[j].0 == records[i].0 || records[j].1 == records[i].1 {
                continue;
            }
            let s = jaccard(&words[i], &words[j]);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((j, s));
            }
        }
        if let Some((j, s)) = best.filter(|&(_, s)| s >= tau) {
            let key = (i.min(j), i.max(j));
            pairs.insert(key);
            sims.insert(key, s);
        }
    }
    Ok(pairs.into_iter().map(|(a, b)| ContrastItem { first: a, second: b, similarity: sims[&(a, b)] }).collect())
}

/// How many comparisons of one kind the reward model got right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Consistency {
    pub consistent: usize,
    /// Two comparisons per item.
    pub total: usize,
}

impl Consistency {
    /// The consistent share (0 when there were no comparisons).
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.consistent as f64 / self.total as f64
        }
    }
}

/// Response and instruction consistency over a set of contrast items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ConsistencyReport {
    pub items: usize,
    pub response: Consistency,
    pub instruction: Consistency,
}

impl ConsistencyReport {
    /// From each item's rewards `[r(I1,R1), r(I1,R2), r(I2,R1), r(I2,R2)]` (the order of
    /// [`ContrastItem::queries`]).
    pub fn from_scores(scores: &[[f64; 4]]) -> Self {
        let mut rep = ConsistencyReport { items: scores.len(), ..Default::default() };
        for &[s11, s12, s21, s22] in scores {
            rep.response.consistent += usize::from(s11 > s12) + usize::from(s22 > s21);
            rep.instruction.consistent += usize::from(s11 > s21) + usize::from(s22 > s12);
        }
        rep.response.total = 2 * scores.len();
        rep.instruction.total = 2 * scores.len();
        rep
    }
}

/// Scores every item with `reward(queries)`, which gets the `(prompt of, response of)` record
/// indices of all items' four combinations at once (one batched pass) and returns one reward
/// each, and reduces them to the two consistencies. Also returns each item's four rewards.
pub fn evaluate_consistency(
    items: &[ContrastItem],
    reward: impl FnOnce(&[(usize, usize)]) -> Result<Vec<f64>>,
) -> Result<(ConsistencyReport, Vec<[f64; 4]>)> {
    let queries: Vec<(usize, usize)> = items.iter().flat_map(|it| it.queries()).collect();
    let r = reward(&queries)?;
    if r.len() != queries.len() {
        return Err(TrainError::Input(format!("consistency: {} rewards for {} queries", r.len(), queries.len())));
    }
    let scores: Vec<[f64; 4]> = r.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
    Ok((ConsistencyReport::from_scores(&scores), scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
        rows.iter().map(|(p, r)| (p.to_string(), r.to_string())).collect()
    }

    #[test]
    fn words_and_jaccard_by_hand() {
        let a = word_set("What is 17+25?");
        let b = word_set("what IS 17 + 26");
        assert_eq!(a.iter().map(String::as_str).collect::<Vec<_>>(), ["17", "25", "is", "what"]);
        // {what, is, 17} shared, union {what, is, 17, 25, 26}: 3/5.
        assert!((jaccard(&a, &b) - 0.6).abs() < 1e-12);
        assert_eq!(jaccard(&word_set(""), &word_set("?!")), 0.0);
        assert_eq!(jaccard(&a, &a), 1.0);
    }

    #[test]
    fn pairs_nearest_other_prompt_above_tau() -> Result<()> {
        let r = recs(&[
            ("What is 17+25?", "42"),                       // 0
            ("Name the capital of France.", "Paris"),       // 1
            ("What is 17+26?", "43"),                       // 2
            ("Name the capital of Spain.", "Madrid"),       // 3
            ("Write a poem about the sea.", "Waves roll."), // 4
        ]);
        // 0–2: 3/5 = 0.6; 1–3: {name, the, capital, of} / 6 = 2/3; 4 shares only "the" with 1, 3
        // (1/10) and nothing with 0, 2.
        let items = contrast_items(&r, 0.5)?;
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].first, items[0].second), (0, 2));
        assert!((items[0].similarity - 0.6).abs() < 1e-12);
        assert_eq!((items[1].first, items[1].second), (1, 3));
        assert!((items[1].similarity - 2.0 / 3.0).abs() < 1e-12);
        // τ above 0.6 drops the arithmetic pair; τ is inclusive.
        let items = contrast_items(&r, 0.65)?;
        assert_eq!(items.iter().map(|i| (i.first, i.second)).collect::<Vec<_>>(), [(1, 3)]);
        assert_eq!(contrast_items(&r, 2.0 / 3.0)?.len(), 1);
        assert!(contrast_items(&r, 0.0).is_err() && contrast_items(&r, 1.5).is_err());
        Ok(())
    }

    #[test]
    fn pairing_ties_self_and_duplicates() -> Result<()> {
        // 1 and 2 are equally near to 0 (2/4 each): the lowest index wins. 3 repeats 0's prompt
        // and 4 repeats 0's response: neither may pair with 0.
        let r = recs(&[
            ("a b c", "x"), // 0
            ("a b d", "y"), // 1
            ("a b e", "z"), // 2
            ("a b c", "w"), // 3
            ("a b c f", "x"),
        ]);
        let items = contrast_items(&r, 0.5)?;
        let pairs: Vec<(usize, usize)> = items.iter().map(|i| (i.first, i.second)).collect();
        // 0 → 1 (tie with 2; 3 has the same prompt, 4 the same response); 1 → 0 (0, 2 and 3
        // tie at 2/4: lowest); 2 → 0 (tie, lowest); 3 ↔ 4 at 3/4 (0 is excluded for both).
        assert_eq!(pairs, [(0, 1), (0, 2), (3, 4)]);
        assert!(pairs.iter().all(|(a, b)| a < b));
        // Same input, same items.
        assert_eq!(contrast_items(&r, 0.5)?, items);
        // One record, or all prompts identical: nothing to pair.
        assert!(contrast_items(&r[..1], 0.5)?.is_empty());
        assert!(contrast_items(&recs(&[("q", "a"), ("q", "b")]), 0.5)?.is_empty());
        Ok(())
    }

    #[test]
    fn metrics_with_a_stub_scorer() -> Result<()> {
        let items = [
            ContrastItem { first: 0, second: 1, similarity: 1.0 },
            ContrastItem { first: 2, second: 3, similarity: 1.0 },
        ];
        // Stub reward: 10 when prompt and response come from the same record, else the
        // response's record index (so mixed scores differ). Fully consistent.
        let stub = |q: &[(usize, usize)]| Ok(q.iter().map(|&(p, r)| if p == r { 10.0 } else { r as f64 }).collect());
        let (rep, scores) = evaluate_consistency(&items, stub)?;
        assert_eq!(scores[0], [10.0, 1.0, 0.0, 10.0]);
        assert_eq!(rep.response, Consistency { consistent: 4, total: 4 });
        assert_eq!(rep.instruction, Consistency { consistent: 4, total: 4 });

        // By hand: item A [s11, s12, s21, s22] = [1, 2, 0, 3]: response 1 > 2 no, 3 > 0 yes;
        // instruction 1 > 0 yes, 3 > 2 yes. Item B = [5, 5, 5, 5]: ties, all inconsistent.
        let rep = ConsistencyReport::from_scores(&[[1.0, 2.0, 0.0, 3.0], [5.0; 4]]);
        assert_eq!(rep.items, 2);
        assert_eq!(rep.response, Consistency { consistent: 1, total: 4 });
        assert_eq!(rep.instruction, Consistency { consistent: 2, total: 4 });
        assert_eq!(rep.response.rate(), 0.25);
        assert_eq!(rep.instruction.rate(), 0.5);
        assert_eq!(ConsistencyReport::from_scores(&[]).response.rate(), 0.0);

        // A reward that returns the wrong number of scores is an error.
        assert!(evaluate_consistency(&items, |_| Ok(vec![0.0])).is_err());
        Ok(())
    }
}
