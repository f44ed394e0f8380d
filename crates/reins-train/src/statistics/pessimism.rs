//! Pessimistic rewards: the lower confidence bound `r − λ·σ` of a reward under the head
//! posterior (Liu, Shi & Sun, arXiv:2604.02507, linear-reward statistics: `r − c·‖φ‖_{I⁻¹}`; Jin, Yang & Wang,
//! "Is Pessimism Provably Efficient for Offline RL?", arXiv:2012.15085), so best-of-n and RL
//! prefer responses the reward model has evidence for over ones it merely extrapolates to.

/// `r_i − λ σ_i` for each response. `λ = 0` gives back the plain rewards.
pub fn lower_confidence_bounds(rewards: &[f64], stds: &[f64], lambda: f64) -> Vec<f64> {
    rewards.iter().zip(stds).map(|(r, s)| r - lambda * s).collect()
}

/// Index of the best response of `scores` (the first on ties), or `None` when empty.
pub fn argmax(scores: &[f64]) -> Option<usize> {
    (0..scores.len()).reduce(|b, j| if scores[j] > scores[b] { j } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcb_can_change_the_pick() {
        // The plainly best response (2.0) is the most uncertain one (σ = 3): with λ = 1 the
        // bounds are (0.5, −1.0, 0.9), so the pick moves from index 1 to index 2.
        let (r, s) = ([1.0, 2.0, 1.2], [0.5, 3.0, 0.3]);
        assert_eq!(argmax(&lower_confidence_bounds(&r, &s, 0.0)), Some(1));
        let lcb = lower_confidence_bounds(&r, &s, 1.0);
        assert_eq!(lcb, vec![0.5, -1.0, 0.8999999999999999]);
        assert_eq!(argmax(&lcb), Some(2));
        assert_eq!(argmax(&[]), None);
    }
}
