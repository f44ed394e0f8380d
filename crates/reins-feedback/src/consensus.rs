//! Consensus from raw votes: majority for choices, Bradley–Terry for pairwise votes,
//! ranked pairs (Tideman) for rankings.
use std::collections::BTreeMap;

/// The most frequent label and its share of the votes. None without votes and when the
/// top count is shared: a 1–1 split is a tie, not a win for whichever label sorts first.
pub fn majority<T: Ord + Clone>(votes: &[T]) -> Option<(T, f64)> {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    for v in votes {
        *counts.entry(v).or_default() += 1;
    }
    let top = counts.values().copied().max()?;
    let mut leaders = counts.into_iter().filter(|&(_, n)| n == top);
    let (label, _) = leaders.next()?;
    if leaders.next().is_some() {
        return None;
    }
    Some((label.clone(), top as f64 / votes.len() as f64))
}

/// Bradley–Terry strengths for `n` players from `(winner, loser, weight)` votes (a tie is
/// two half-weight votes), fitted with Hunter's (2004) MM iteration
/// p_i ← W_i / Σ_j n_ij / (p_i + p_j), normalised to sum to n. A small prior of one
/// half-win against a virtual average player keeps never-winning players finite.
pub fn bradley_terry(n: usize, votes: &[(usize, usize, f64)]) -> Vec<f64> {
    let mut wins = vec![0.5; n];
    let mut games = vec![vec![0.0; n]; n];
    for &(w, l, weight) in votes {
        if w < n && l < n && w != l {
            wins[w] += weight;
            games[w][l] += weight;
            games[l][w] += weight;
        }
    }
    let mut p = vec![1.0; n];
    for _ in 0..1000 {
        let mut next = vec![0.0; n];
        for i in 0..n {
            // The prior: one game against a player of strength 1.
            let mut denom = 1.0 / (p[i] + 1.0);
            for j in 0..n {
                if games[i][j] > 0.0 {
                    denom += games[i][j] / (p[i] + p[j]);
                }
            }
            next[i] = wins[i] / denom;
        }
        let sum: f64 = next.iter().sum();
        next.iter_mut().for_each(|x| *x *= n as f64 / sum);
        let delta = next.iter().zip(&p).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        p = next;
        if delta < 1e-10 {
            break;
        }
    }
    p
}

/// Tideman's ranked pairs over ballots (each a best-first list of candidate indices).
/// Returns the candidates best first.
#[allow(clippy::needless_range_loop)] // pref[x][y] vs pref[y][x] reads as the definition
pub fn ranked_pairs(n: usize, ballots: &[Vec<usize>]) -> Vec<usize> {
    let mut pref = vec![vec![0i64; n]; n];
    for b in ballots {
        for (i, &x) in b.iter().enumerate() {
            for &y in &b[i + 1..] {
                if x < n && y < n {
                    pref[x][y] += 1;
                }
            }
        }
    }
    let mut pairs: Vec<(usize, usize, i64, i64)> = Vec::new();
    for x in 0..n {
        for y in 0..n {
            if x != y && pref[x][y] > pref[y][x] {
                pairs.push((x, y, pref[x][y], pref[y][x]));
            }
        }
    }
    // Strongest victories first; a smaller opposition breaks ties, then indices.
    pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.3.cmp(&b.3)).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let mut locked = vec![vec![false; n]; n];
    for (x, y, _, _) in pairs {
        if !reaches(&locked, y, x) {
            locked[x][y] = true;
        }
    }
    // Order by number of candidates each beats in the locked graph's transitive closure.
    let mut order: Vec<usize> = (0..n).collect();
    let beats: Vec<usize> = (0..n).map(|x| (0..n).filter(|&y| y != x && reaches(&locked, x, y)).count()).collect();
    order.sort_by(|a, b| beats[*b].cmp(&beats[*a]).then(a.cmp(b)));
    order
}

fn reaches(g: &[Vec<bool>], from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; g.len()];
    while let Some(x) = stack.pop() {
        if x == to {
            return true;
        }
        if std::mem::replace(&mut seen[x], true) {
            continue;
        }
        stack.extend((0..g.len()).filter(|&y| g[x][y]));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_picks_most_frequent() {
        assert_eq!(majority(&["a", "b", "a"]), Some(("a", 2.0 / 3.0)));
        assert_eq!(majority::<&str>(&[]), None);
    }

    /// A shared top count is a tie, not a win for the label that sorts first.
    #[test]
    fn a_split_vote_has_no_majority() {
        assert_eq!(majority(&["1", "0"]), None);
        assert_eq!(majority(&["b", "a", "c", "a", "b"]), None);
        assert_eq!(majority(&["b", "a", "b", "c"]), Some(("b", 0.5)));
    }

    #[test]
    fn bradley_terry_orders_by_win_rate() {
        // 0 beats 1 three times out of four; 1 beats 2 three times out of four.
        let mut votes = vec![];
        for _ in 0..3 {
            votes.push((0, 1, 1.0));
            votes.push((1, 2, 1.0));
        }
        votes.push((1, 0, 1.0));
        votes.push((2, 1, 1.0));
        let p = bradley_terry(3, &votes);
        assert!(p[0] > p[1] && p[1] > p[2], "{p:?}");
        assert!((p.iter().sum::<f64>() - 3.0).abs() < 1e-9);
    }

    /// Wikipedia's Tennessee capital example: Memphis 42%, Nashville 26%, Chattanooga 15%,
    /// Knoxville 17% → Nashville, Chattanooga, Knoxville, Memphis.
    #[test]
    fn ranked_pairs_tennessee() {
        let (m, n, c, k) = (0, 1, 2, 3);
        let mut ballots = vec![];
        ballots.extend(std::iter::repeat_n(vec![m, n, c, k], 42));
        ballots.extend(std::iter::repeat_n(vec![n, c, k, m], 26));
        ballots.extend(std::iter::repeat_n(vec![c, k, n, m], 15));
        ballots.extend(std::iter::repeat_n(vec![k, c, n, m], 17));
        assert_eq!(ranked_pairs(4, &ballots), vec![n, c, k, m]);
    }
}
