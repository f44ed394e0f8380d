//! ConvexDA (Shen et al., "The Trickle-down Impact of Reward (In-)consistency on RLHF",
//! arXiv:2309.16155; the authors' `DA_convex.py`): augment reward-model training pairs cheaply
//! but diversely. For each pair, perturb the **preferred** response `n` times (5 in the paper)
//! with spelling errors on about 5 % of its words, embed the variants, project them to 2-D with
//! PCA and keep only the convex-hull vertices (the most "extreme" variants); each kept variant
//! becomes a new pair (variant ≻ original rejected).
//!
//! This file holds the three pure pieces: the perturbation ([`perturb_words`]), 2-D PCA by
//! power iteration ([`pca_2d`]) and Andrew's monotone-chain hull ([`convex_hull`]), and their
//! composition [`hull_vertices`]. The embedding is the caller's (the paper uses SimCSE).

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// The paper's number of variants per preferred response.
pub const DEFAULT_VARIANTS: usize = 5;
/// The paper's share of words perturbed (`aug_max` 5 %).
pub const DEFAULT_WORD_RATE: f64 = 0.05;

/// ConvexDA settings of `reins reward` (off by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvexDaArgs {
    /// Add ConvexDA pairs to the training set (default false).
    pub convex_da: bool,
    /// Perturbed variants of each preferred response (default 5, the paper's).
    pub convex_da_variants: usize,
    /// Share of a response's words that get a spelling error (default 0.05, the paper's).
    pub convex_da_word_rate: f64,
}

impl Default for ConvexDaArgs {
    fn default() -> Self {
        ConvexDaArgs { convex_da: false, convex_da_variants: DEFAULT_VARIANTS, convex_da_word_rate: DEFAULT_WORD_RATE }
    }
}

impl ConvexDaArgs {
    pub fn validate(&self) -> Result<()> {
        if self.convex_da_variants < 3 {
            return Err(TrainError::Config(format!(
                "convex_da_variants = {}: a hull needs at least 3 variants; the paper uses 5",
                self.convex_da_variants
            )));
        }
        if !(self.convex_da_word_rate > 0.0 && self.convex_da_word_rate <= 1.0) {
            return Err(TrainError::Config(format!(
                "convex_da_word_rate = {}: give a share of words in (0, 1]; the paper uses 0.05",
                self.convex_da_word_rate
            )));
        }
        Ok(())
    }
}

/// ConvexDA over a training set's preferred responses: for pair `i`, `variants` perturbations
/// of `chosen[i]`, embedded by `embed(i, &variants)` (one vector each), of which the hull
/// vertices are kept. Returns `(pair index, variant)` of each new pair, in pair order; each
/// becomes `variant ≻ rejected[i]`.
pub fn convex_da_variants(
    chosen: &[String],
    args: &ConvexDaArgs,
    rng: &mut impl Rng,
    mut embed: impl FnMut(usize, &[String]) -> Result<Vec<Vec<f64>>>,
) -> Result<Vec<(usize, String)>> {
    args.validate()?;
    let mut out = Vec::new();
    for (i, c) in chosen.iter().enumerate() {
        let variants: Vec<String> =
            (0..args.convex_da_variants).map(|_| perturb_words(c, args.convex_da_word_rate, rng)).collect();
        if variants.iter().all(|v| v == c) {
            continue; // nothing to perturb (no word of two letters)
        }
        let e = embed(i, &variants)?;
        if e.len() != variants.len() {
            return Err(TrainError::Input(format!(
                "convex_da: {} embeddings for {} variants",
                e.len(),
                variants.len()
            )));
        }
        out.extend(hull_vertices(&e).into_iter().map(|k| (i, variants[k].clone())));
    }
    Ok(out)
}

/// A spelling-error augmenter: `max(1, round(rate · words))` distinct words of at least two
/// letters each get one character edit — swap two neighbours, drop one, double one or replace
/// one by a random lowercase letter. Words are whitespace-separated; the whitespace is kept as
/// it was. A text without such a word comes back unchanged.
pub fn perturb_words(text: &str, rate: f64, rng: &mut impl Rng) -> String {
    // (start byte, end byte) of each whitespace-separated word.
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, text.len()));
    }
    let editable: Vec<usize> = (0..words.len())
        .filter(|&w| text[words[w].0..words[w].1].chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .collect();
    if editable.is_empty() {
        return text.to_string();
    }
    let k = ((rate * words.len() as f64).round() as usize).clamp(1, editable.len());
    let picked: Vec<usize> =
        rand::seq::index::sample(rng, editable.len(), k).into_iter().map(|i| editable[i]).collect();
    let mut out = String::with_capacity(text.len() + k);
    let mut at = 0;
    let mut order = picked;
    order.sort_unstable();
    for w in order {
        let (s, e) = words[w];
        out.push_str(&text[at..s]);
        out.push_str(&edit_word(&text[s..e], rng));
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

/// One character edit of a word with at least two characters.
fn edit_word(word: &str, rng: &mut impl Rng) -> String {
    let mut c: Vec<char> = word.chars().collect();
    let i = rng.random_range(0..c.len() - 1);
    match rng.random_range(0..4) {
        0 if c[i] != c[i + 1] => c.swap(i, i + 1),
        1 => {
            c.remove(i);
        }
        2 => c.insert(i, c[i]),
        _ => {
            let old = c[i];
            let mut new = old;
            while new == old {
                new = (b'a' + rng.random_range(0..26u8)) as char;
            }
            c[i] = new;
        }
    }
    c.into_iter().collect()
}

/// Coordinates of `points` `[N][D]` on their first two principal components `[N][2]`, by power
/// iteration on the centred data with deflation (never forming the D×D covariance), each
/// started from the longest remaining row. Each
/// component's sign makes its largest-magnitude coordinate positive, so the result does not
/// depend on the start vector. A direction with no variance gives zeros.
pub fn pca_2d(points: &[Vec<f64>], iterations: usize) -> Vec<[f64; 2]> {
    let n = points.len();
    let d = points.first().map_or(0, Vec::len);
    let mean: Vec<f64> = (0..d).map(|j| points.iter().map(|p| p[j]).sum::<f64>() / n.max(1) as f64).collect();
    let mut x: Vec<Vec<f64>> = points.iter().map(|p| p.iter().zip(&mean).map(|(a, m)| a - m).collect()).collect();
    let mut out = vec![[0.0; 2]; n];
    for comp in 0..2 {
        // Start: the longest (deflated) row, which lies in the data's span, so the start is
        // never orthogonal to every remaining direction (a fixed vector can be).
        let mut v = x.iter().max_by(|a, b| dot(a, a).total_cmp(&dot(b, b))).cloned().unwrap_or_default();
        if !normalise(&mut v) {
            break; // no variance left: the remaining coordinates stay 0
        }
        for _ in 0..iterations {
            // v ← Xᵀ X v
            let xv: Vec<f64> = x.iter().map(|r| dot(r, &v)).collect();
            let mut next = vec![0.0; d];
            for (r, s) in x.iter().zip(&xv) {
                for (nj, rj) in next.iter_mut().zip(r) {
                    *nj += s * rj;
                }
            }
            if !normalise(&mut next) {
                v = vec![0.0; d];
                break;
            }
            v = next;
        }
        let mut proj: Vec<f64> = x.iter().map(|r| dot(r, &v)).collect();
        let big = proj.iter().copied().fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
        if big < 0.0 {
            proj.iter_mut().for_each(|p| *p = -*p);
            v.iter_mut().for_each(|p| *p = -*p);
        }
        for (o, p) in out.iter_mut().zip(&proj) {
            o[comp] = *p;
        }
        // Deflate: remove the found direction from every row.
        for (r, p) in x.iter_mut().zip(&proj) {
            for (rj, vj) in r.iter_mut().zip(&v) {
                *rj -= p * vj;
            }
        }
    }
    out
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales `v` to unit length; false (and `v` untouched) when it is (numerically) zero.
fn normalise(v: &mut [f64]) -> bool {
    let n = dot(v, v).sqrt();
    if n <= 1e-12 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= n);
    true
}

/// Indices of the convex-hull vertices of `points`, counter-clockwise from the lowest-x
/// (then lowest-y) point, by Andrew's monotone chain. Points on an edge are not vertices; of
/// duplicate points the lowest index is kept. Fewer than three distinct points: all distinct
/// points (in that order), as the hull is then degenerate.
pub fn convex_hull(points: &[[f64; 2]]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        let (p, q) = (points[a], points[b]);
        p[0].total_cmp(&q[0]).then(p[1].total_cmp(&q[1])).then(a.cmp(&b))
    });
    idx.dedup_by(|b, a| points[*a] == points[*b]);
    if idx.len() < 3 {
        return idx;
    }
    let cross = |o: usize, a: usize, b: usize| {
        let (o, a, b) = (points[o], points[a], points[b]);
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<usize> = Vec::with_capacity(2 * idx.len());
    for pass in [idx.clone(), idx.iter().rev().copied().collect()] {
        let floor = hull.len();
        for &p in &pass {
            while hull.len() >= floor + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop(); // the last point starts the other chain
    }
    hull
}

/// The variants ConvexDA keeps: the hull vertices of the embeddings' 2-D PCA projection,
/// in increasing index order.
pub fn hull_vertices(embeddings: &[Vec<f64>]) -> Vec<usize> {
    let mut v = convex_hull(&pca_2d(embeddings, 100));
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn hull_of_a_square_by_hand() {
        // Corners, an interior point, an edge midpoint and a duplicate corner.
        let pts = [[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 2.0], [1.0, 0.0], [2.0, 2.0]];
        assert_eq!(convex_hull(&pts), [0, 1, 3, 4]); // counter-clockwise from (0, 0)
                                                     // A triangle listed clockwise comes back counter-clockwise.
        assert_eq!(convex_hull(&[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), [0, 2, 1]);
        // Collinear points: the two ends.
        assert_eq!(convex_hull(&[[1.0, 1.0], [0.0, 0.0], [2.0, 2.0], [3.0, 3.0]]), [1, 3]);
        assert_eq!(convex_hull(&[[5.0, 5.0], [5.0, 5.0]]), [0]);
        assert!(convex_hull(&[]).is_empty());
    }

    #[test]
    fn pca_recovers_the_planes_axes() {
        // Points in 3-D on the plane z = 10, shifted by (10, 10): centred (x, y) with zero
        // covariance, var x = 12 > var y = 6, so the components are the x and y axes; the
        // largest-magnitude coordinates (3 and 2) are positive, so no sign flips.
        let base = [[3.0, 0.0], [-1.0, 2.0], [-1.0, -1.0], [-1.0, -1.0]];
        let pts: Vec<Vec<f64>> = base.iter().map(|p| vec![p[0] + 10.0, p[1] + 10.0, 10.0]).collect();
        let proj = pca_2d(&pts, 200);
        for (p, b) in proj.iter().zip(&base) {
            assert!((p[0] - b[0]).abs() < 1e-9 && (p[1] - b[1]).abs() < 1e-9, "{proj:?}");
        }
        // Mirrored data projects the same: the data, not the start vector, fixes the signs.
        let mirrored: Vec<Vec<f64>> = base.iter().map(|p| vec![-p[0], -p[1], 0.0]).collect();
        for (p, q) in pca_2d(&mirrored, 200).iter().zip(&proj) {
            assert!((p[0] - q[0]).abs() < 1e-9 && (p[1] - q[1]).abs() < 1e-9);
        }
        // One point: all zeros; a line: the second component is zero.
        assert_eq!(pca_2d(&[vec![1.0, 2.0]], 10), [[0.0, 0.0]]);
        // (0,0), (1,1), (3,3): centred along (1,1)/√2 at −4/3·√2, −1/3·√2, 5/3·√2.
        let line = pca_2d(&[vec![0.0, 0.0], vec![1.0, 1.0], vec![3.0, 3.0]], 50);
        let want = [-4.0 / 3.0, -1.0 / 3.0, 5.0 / 3.0].map(|c| c * 2f64.sqrt());
        for (p, w) in line.iter().zip(want) {
            assert!((p[0] - w).abs() < 1e-9 && p[1].abs() < 1e-9, "{line:?}");
        }
    }

    #[test]
    fn hull_vertices_of_embeddings() {
        // A square with its centre, embedded in 3-D: the centre is not a vertex.
        let e = vec![
            vec![0.0, 0.0, 1.0],
            vec![0.5, 0.5, 1.0],
            vec![1.0, 0.0, 1.0],
            vec![1.0, 1.0, 1.0],
            vec![0.0, 1.0, 1.0],
        ];
        assert_eq!(hull_vertices(&e), [0, 2, 3, 4]);
    }

    #[test]
    fn variants_keep_hull_vertices() -> Result<()> {
        // Stub embedding: variant k of 5 at a corner of a square, or (k = 4) its centre.
        let chosen = vec!["several words here to perturb".to_string(), "1 2 3".to_string()];
        let corners = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]];
        let mut calls = Vec::new();
        let out = convex_da_variants(&chosen, &ConvexDaArgs::default(), &mut ChaCha8Rng::seed_from_u64(1), |i, v| {
            calls.push((i, v.len()));
            Ok(corners.iter().map(|c| vec![c[0], c[1], 7.0]).collect())
        })?;
        // The second response has no word to perturb: no call, no pairs.
        assert_eq!(calls, [(0, 5)]);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|(i, v)| *i == 0 && v != &chosen[0]));
        let bad = ConvexDaArgs { convex_da_variants: 2, ..Default::default() };
        assert!(convex_da_variants(&chosen, &bad, &mut ChaCha8Rng::seed_from_u64(1), |_, _| Ok(vec![])).is_err());
        let bad = ConvexDaArgs { convex_da_word_rate: 0.0, ..Default::default() };
        assert!(bad.validate().is_err());
        let short = convex_da_variants(&chosen, &ConvexDaArgs::default(), &mut ChaCha8Rng::seed_from_u64(1), |_, _| {
            Ok(vec![vec![0.0]])
        });
        assert!(short.is_err());
        Ok(())
    }

    #[test]
    fn perturbation_edits_a_few_words_once() {
        let text = "the quick brown fox jumps over the lazy dog and then runs far away from here today ok";
        let words: Vec<&str> = text.split(' ').collect(); // 18 words: round(0.05 · 18) = 1
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let out = perturb_words(text, 0.05, &mut rng);
        let got: Vec<&str> = out.split(' ').collect();
        assert_eq!(got.len(), words.len());
        let changed: Vec<usize> = (0..words.len()).filter(|&i| got[i] != words[i]).collect();
        assert_eq!(changed.len(), 1, "{out}");
        let (a, b) = (words[changed[0]], got[changed[0]]);
        assert!((a.len() as i64 - b.len() as i64).abs() <= 1 && a.len() >= 2, "{a} → {b}");
        // Same seed, same variant; a higher rate edits more words: round(0.25 · 18) = 5, and
        // every edit changes its word (a drop or double changes the length, a swap of equal
        // letters becomes a replacement).
        assert_eq!(perturb_words(text, 0.05, &mut ChaCha8Rng::seed_from_u64(3)), out);
        let many = perturb_words(text, 0.25, &mut ChaCha8Rng::seed_from_u64(3));
        let n = many.split(' ').zip(&words).filter(|(g, w)| g != *w).count();
        assert_eq!(n, 5, "{many}");
        // Whitespace is kept; one-letter words and numbers are never edited.
        assert_eq!(perturb_words("a 1 b  22", 1.0, &mut rng), "a 1 b  22");
        let w = perturb_words("  hello\tworld ", 1.0, &mut rng);
        assert!(w.starts_with("  ") && w.contains('\t') && w.ends_with(' '), "{w:?}");
        assert_eq!(perturb_words("", 0.05, &mut rng), "");
    }
}
