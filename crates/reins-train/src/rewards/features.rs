//! Domain-knowledge reward models (Nath et al., "Leveraging Domain Knowledge for Efficient
//! Reward Modelling in RLHF: A Case-Study in E-Commerce Opinion Summarization",
//! arXiv:2402.15473): the reward is a low-capacity function of hand-designed features of the
//! response, `r(x, y) = Σ_k w_k · z_k(x, y)`, fit with Bradley–Terry on preference pairs. With
//! few labels it can beat a neural reward model, and its weights say what it learned.
//!
//! Features are programmatic: built-in extractors configured by [`FeatureSpec`] (word count,
//! regular-expression counts and matches, repeated word n-grams, prompt–response word overlap)
//! or any [`Feature`] implementation. Each is standardised by its mean and deviation over the
//! training responses (`z_k = (f_k − μ_k)/s_k`), so the L2 penalty treats them alike; the
//! weights maximise `Σ_i log σ(w·(z(y_c) − z(y_r))) − (λ/2)·|w|²` by Newton's method (the
//! objective is concave: a unique optimum), optionally kept non-negative (`nonnegative`, a
//! monotone model: each step is clipped at 0).
//!
//! A learned neural residual goes on top ([`ResidualReward`]): a reward model trained with the
//! feature model's score difference as a fixed offset in its Bradley–Terry logit,
//! `σ(w·Δz + Δs_θ)` (`reins reward --set residual_of_features=DIR`, [`feature_offsets`]), learns
//! only what the features leave unexplained; the reward is `w·z + s_θ`. The features are fit
//! first and kept fixed (a two-stage fit, not the joint one the paper may use; its form of the
//! combination is recalled, not verified).

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::rewards::http::Decode;
use crate::rewards::RewardSource;
use crate::{Result, TrainError};

/// A feature of a (prompt, response) pair of texts.
pub trait Feature: Send + Sync {
    fn name(&self) -> String;
    fn value(&self, prompt: &str, response: &str) -> f64;
}

/// A built-in feature, as configured in TOML (`kind = "…"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// Words (whitespace-separated) in the response.
    Words,
    /// Matches of `pattern` (Rust `regex` syntax) in the response.
    RegexCount { name: String, pattern: String },
    /// 1 when the response matches `pattern`, else 0.
    RegexMatch { name: String, pattern: String },
    /// Word `n`-grams of the response that already occurred earlier in it.
    RepeatedNgrams { n: usize },
    /// Share of the prompt's distinct words (lower-cased, punctuation stripped) the response uses.
    PromptOverlap,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A compiled [`FeatureSpec`].
struct Builtin {
    spec: FeatureSpec,
    regex: Option<Regex>,
}

impl Feature for Builtin {
    fn name(&self) -> String {
        match &self.spec {
            FeatureSpec::Words => "words".into(),
            FeatureSpec::RegexCount { name, .. } | FeatureSpec::RegexMatch { name, .. } => name.clone(),
            FeatureSpec::RepeatedNgrams { n } => format!("repeated_{n}grams"),
            FeatureSpec::PromptOverlap => "prompt_overlap".into(),
        }
    }

    fn value(&self, prompt: &str, response: &str) -> f64 {
        match &self.spec {
            FeatureSpec::Words => response.split_whitespace().count() as f64,
            FeatureSpec::RegexCount { .. } => self.regex.as_ref().map_or(0, |r| r.find_iter(response).count()) as f64,
            FeatureSpec::RegexMatch { .. } => self.regex.as_ref().is_some_and(|r| r.is_match(response)) as u8 as f64,
            FeatureSpec::RepeatedNgrams { n } => {
                let w = words(response);
                let mut seen = std::collections::HashSet::new();
                w.windows(*n).filter(|g| !seen.insert(g.to_vec())).count() as f64
            }
            FeatureSpec::PromptOverlap => {
                let p: std::collections::HashSet<String> = words(prompt).into_iter().collect();
                if p.is_empty() {
                    return 0.0;
                }
                let r: std::collections::HashSet<String> = words(response).into_iter().collect();
                p.intersection(&r).count() as f64 / p.len() as f64
            }
        }
    }
}

impl FeatureSpec {
    /// Compiles the spec; a bad pattern or `n = 0` is an error that names the feature.
    pub fn build(&self) -> Result<Box<dyn Feature>> {
        let regex = match self {
            FeatureSpec::RegexCount { name, pattern } | FeatureSpec::RegexMatch { name, pattern } => {
                Some(Regex::new(pattern).map_err(|e| {
                    TrainError::Config(format!("feature `{name}`: pattern `{pattern}` is not valid: {e}"))
                })?)
            }
            FeatureSpec::RepeatedNgrams { n: 0 } => {
                return Err(TrainError::Config("feature repeated_ngrams: n must be at least 1".into()));
            }
            _ => None,
        };
        Ok(Box::new(Builtin { spec: self.clone(), regex }))
    }
}

/// Fitting settings and the features, as the TOML file gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// L2 penalty λ on the standardised weights (default 1.0).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Keep every weight ≥ 0 (a monotone model; default false).
    #[serde(default)]
    pub nonnegative: bool,
    /// The features, in order (`[[feature]]` tables).
    pub feature: Vec<FeatureSpec>,
}

fn default_l2() -> f64 {
    1.0
}

impl FeatureConfig {
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let c: FeatureConfig =
            toml::from_str(text).map_err(|e| TrainError::Config(format!("{origin}: {}", e.message())))?;
        if c.feature.is_empty() {
            return Err(TrainError::Config(format!("{origin}: no features: add [[feature]] tables")));
        }
        if !(c.l2.is_finite() && c.l2 >= 0.0) {
            return Err(TrainError::Config(format!("{origin}: l2 must be a number >= 0")));
        }
        for f in &c.feature {
            f.build()?;
        }
        Ok(c)
    }
}

/// A fitted feature reward model: what `reins reward-features` writes (`feature_rm.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureModel {
    pub config: FeatureConfig,
    /// Feature names, in order (for reading the weights).
    pub names: Vec<String>,
    /// Per feature: mean and deviation over the training responses.
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Weight of each standardised feature.
    pub weights: Vec<f64>,
    /// Pairs fit on, and the share the fitted model orders as labelled.
    pub n_pairs: usize,
    pub train_accuracy: f64,
}

/// The standardised features of a response.
fn standardise(raw: &[f64], mean: &[f64], scale: &[f64]) -> Vec<f64> {
    raw.iter().zip(mean).zip(scale).map(|((x, m), s)| (x - m) / s).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Solves `A x = b` for a small symmetric positive-definite `A` (Gaussian elimination with
/// partial pivoting).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let k = b.len();
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap_or(c);
        a.swap(c, p);
        b.swap(c, p);
        let pivot = a[c].clone();
        for r in c + 1..k {
            let f = a[r][c] / pivot[c];
            for (x, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; k];
    for r in (0..k).rev() {
        x[r] = (b[r] - (r + 1..k).map(|j| a[r][j] * x[j]).sum::<f64>()) / a[r][r];
    }
    x
}

impl FeatureModel {
    /// Fits the weights on `(prompt, chosen, rejected)` texts.
    pub fn fit(config: &FeatureConfig, pairs: &[(String, String, String)]) -> Result<FeatureModel> {
        if pairs.is_empty() {
            return Err(TrainError::Input("no preference pairs to fit the feature reward model on".into()));
        }
        let feats: Vec<Box<dyn Feature>> = config.feature.iter().map(FeatureSpec::build).collect::<Result<_>>()?;
        let raw = |p: &str, y: &str| feats.iter().map(|f| f.value(p, y)).collect::<Vec<f64>>();
        let chosen: Vec<Vec<f64>> = pairs.iter().map(|(p, c, _)| raw(p, c)).collect();
        let rejected: Vec<Vec<f64>> = pairs.iter().map(|(p, _, r)| raw(p, r)).collect();
        let k = feats.len();
        let all: Vec<&Vec<f64>> = chosen.iter().chain(&rejected).collect();
        let n = all.len() as f64;
        let mean: Vec<f64> = (0..k).map(|j| all.iter().map(|v| v[j]).sum::<f64>() / n).collect();
        let scale: Vec<f64> = (0..k)
            .map(|j| {
                let var = all.iter().map(|v| (v[j] - mean[j]).powi(2)).sum::<f64>() / n;
                if var > 1e-24 {
                    var.sqrt()
                } else {
                    1.0 // a constant feature: its standardised value is 0 everywhere
                }
            })
            .collect();
        let diffs: Vec<Vec<f64>> = chosen
            .iter()
            .zip(&rejected)
            .map(|(c, r)| {
                let (zc, zr) = (standardise(c, &mean, &scale), standardise(r, &mean, &scale));
                zc.iter().zip(&zr).map(|(a, b)| a - b).collect()
            })
            .collect();
        let w = newton(&diffs, config.l2, config.nonnegative);
        let right = diffs.iter().filter(|d| dot(&w, d) > 0.0).count();
        Ok(FeatureModel {
            config: config.clone(),
            names: feats.iter().map(|f| f.name()).collect(),
            mean,
            scale,
            weights: w,
            n_pairs: pairs.len(),
            train_accuracy: right as f64 / pairs.len() as f64,
        })
    }

    /// The compiled features, in the model's order.
    pub fn features(&self) -> Result<Vec<Box<dyn Feature>>> {
        self.config.feature.iter().map(FeatureSpec::build).collect()
    }

    /// The reward of each `(prompt, response)`.
    pub fn score_texts(&self, items: &[(String, String)]) -> Result<Vec<f64>> {
        let feats = self.features()?;
        Ok(items
            .iter()
            .map(|(p, y)| {
                let raw: Vec<f64> = feats.iter().map(|f| f.value(p, y)).collect();
                dot(&self.weights, &standardise(&raw, &self.mean, &self.scale))
            })
            .collect())
    }
}

/// Maximises `Σ log σ(w·d_i) − (λ/2)|w|²` by Newton's method from 0 (clipped at 0 when
/// `nonnegative`).
fn newton(diffs: &[Vec<f64>], l2: f64, nonnegative: bool) -> Vec<f64> {
    let k = diffs.first().map_or(0, Vec::len);
    let mut w = vec![0.0; k];
    for _ in 0..100 {
        let mut g: Vec<f64> = w.iter().map(|x| -l2 * x).collect();
        let mut h = vec![vec![0.0; k]; k];
        for (i, row) in h.iter_mut().enumerate() {
            row[i] = l2 + 1e-9;
        }
        for d in diffs {
            let p = sigmoid(dot(&w, d));
            for a in 0..k {
                g[a] += (1.0 - p) * d[a];
                for b in 0..k {
                    h[a][b] += p * (1.0 - p) * d[a] * d[b];
                }
            }
        }
        let step = solve(h, g);
        let mut moved = 0.0f64;
        for (x, s) in w.iter_mut().zip(&step) {
            let next = if nonnegative { (*x + s).max(0.0) } else { *x + s };
            moved = moved.max((next - *x).abs());
            *x = next;
        }
        if moved < 1e-12 {
            break;
        }
    }
    w
}

/// A fitted feature model as a reward source: token ids are decoded to text first.
pub struct FeatureReward {
    pub model: FeatureModel,
    features: Vec<Box<dyn Feature>>,
    decode: Box<Decode>,
}

impl FeatureReward {
    pub fn new(model: FeatureModel, decode: Box<Decode>) -> Result<Self> {
        let features = model.features()?;
        Ok(FeatureReward { model, features, decode })
    }

    /// Reads `feature_rm.json` from `dir`.
    pub fn load_model(dir: &std::path::Path) -> Result<FeatureModel> {
        let p = dir.join(FEATURE_MODEL_FILE);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| TrainError::Input(format!("{}: {e} (fit one with `reins reward-features`)", p.display())))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Input(format!("{}: {e}", p.display())))
    }
}

/// The Bradley–Terry offset of each `(prompt, chosen, rejected)` pair under a fitted feature
/// model: `r_f(chosen) − r_f(rejected)`. A residual model adds it to its own score difference.
pub fn feature_offsets(model: &FeatureModel, pairs: &[(String, String, String)]) -> Result<Vec<f64>> {
    let chosen: Vec<(String, String)> = pairs.iter().map(|(p, c, _)| (p.clone(), c.clone())).collect();
    let rejected: Vec<(String, String)> = pairs.iter().map(|(p, _, r)| (p.clone(), r.clone())).collect();
    let (a, b) = (model.score_texts(&chosen)?, model.score_texts(&rejected)?);
    Ok(a.iter().zip(&b).map(|(x, y)| x - y).collect())
}

/// A feature model plus the neural residual trained on top of it: `w·z(x, y) + s_θ(x, y)`.
/// The residual's checkpoint carries the feature model (`feature_rm.json`).
pub struct ResidualReward {
    pub features: FeatureReward,
    pub residual: super::ModelReward,
}

impl ResidualReward {
    /// The residual model in `dir` (from `reins reward --set residual_of_features=…`) with the
    /// feature model its checkpoint carries.
    pub fn load(dir: &std::path::Path, device: &candle_core::Device, decode: Box<Decode>) -> Result<Self> {
        let features = FeatureReward::new(FeatureReward::load_model(dir)?, decode)?;
        let model = reins_model::Model::load(dir, device, &reins_model::LoadOptions::default())?;
        Ok(ResidualReward { features, residual: super::ModelReward::new(model)? })
    }
}

impl RewardSource for ResidualReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        let f = self.features.score(prompts, completions)?;
        let r = self.residual.score(prompts, completions)?;
        Ok(f.iter().zip(&r).map(|(a, b)| a + b).collect())
    }

    fn name(&self) -> &str {
        "features_and_residual"
    }
}

/// The file a fitted feature model is saved as.
pub const FEATURE_MODEL_FILE: &str = "feature_rm.json";

impl RewardSource for FeatureReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        Ok(prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| {
                let (p, y) = ((self.decode)(p), (self.decode)(c));
                let raw: Vec<f64> = self.features.iter().map(|f| f.value(&p, &y)).collect();
                dot(&self.model.weights, &standardise(&raw, &self.model.mean, &self.model.scale)) as f32
            })
            .collect())
    }

    fn name(&self) -> &str {
        "features"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn spec(text: &str) -> FeatureConfig {
        FeatureConfig::from_toml(text, "test").unwrap()
    }

    /// The offset a residual model adds: `w·(z(chosen) − z(rejected))`, by hand for one word-count
    /// feature (mean 2, deviation 0.5, weight 0.3).
    #[test]
    fn feature_offsets_by_hand() {
        let model = FeatureModel {
            config: spec("[[feature]]\nkind = \"words\"\n"),
            names: vec!["words".into()],
            mean: vec![2.0],
            scale: vec![0.5],
            weights: vec![0.3],
            n_pairs: 0,
            train_accuracy: 0.0,
        };
        let pairs =
            [("p".to_string(), "a b c d".to_string(), "a".to_string()), ("p".into(), "a b".into(), "a b c".into())];
        let got = feature_offsets(&model, &pairs).unwrap();
        // (4 − 2)/0.5·0.3 − (1 − 2)/0.5·0.3 = 1.2 + 0.6; (2 − 2)/0.5·0.3 − (3 − 2)/0.5·0.3 = −0.6
        assert!((got[0] - 1.8).abs() < 1e-12 && (got[1] + 0.6).abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn builtin_features_by_hand() {
        let c = spec(
            r#"
            [[feature]]
            kind = "words"
            [[feature]]
            kind = "regex_count"
            name = "polite"
            pattern = "(?i)\\b(please|thanks)\\b"
            [[feature]]
            kind = "regex_match"
            name = "ends_well"
            pattern = "[.!?]$"
            [[feature]]
            kind = "repeated_ngrams"
            n = 2
            [[feature]]
            kind = "prompt_overlap"
            "#,
        );
        let f: Vec<Box<dyn Feature>> = c.feature.iter().map(|s| s.build().unwrap()).collect();
        let (p, y) =
            ("What is the capital of France?", "Thanks! The capital is Paris, the capital is Paris. Please ask");
        let v: Vec<f64> = f.iter().map(|f| f.value(p, y)).collect();
        // 11 words; "Thanks" and "Please"; no final punctuation; "the capital", "capital is",
        // "is paris" repeat; prompt words {what, is, the, capital, of, france}: is, the, capital.
        assert_eq!(v, vec![11.0, 2.0, 0.0, 3.0, 0.5]);
        assert_eq!(
            f.iter().map(|f| f.name()).collect::<Vec<_>>(),
            ["words", "polite", "ends_well", "repeated_2grams", "prompt_overlap"]
        );
    }

    #[test]
    fn bad_configs_name_what_to_fix() {
        let err = |t: &str| FeatureConfig::from_toml(t, "f.toml").unwrap_err().to_string();
        assert!(err("[[feature]]\nkind = \"regex_count\"\nname = \"x\"\npattern = \"(\"\n").contains("feature `x`"));
        assert!(err("l2 = 1.0\n").contains("feature"));
        assert!(err("[[feature]]\nkind = \"wordz\"\n").contains("wordz"));
        assert!(err("[[feature]]\nkind = \"repeated_ngrams\"\nn = 0\n").contains("n must be"));
    }

    /// On pairs labelled by a Bradley–Terry model of known weights, the fit recovers the
    /// weights' direction, and without a penalty its gradient is zero at the optimum (checked
    /// by finite differences of the objective).
    #[test]
    fn the_fit_recovers_bradley_terry_weights() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let truth = [1.5, -0.8, 0.0];
        let diffs: Vec<Vec<f64>> = (0..4000)
            .map(|_| {
                let d: Vec<f64> = (0..3).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
                // label: keep d when "chosen" wins under the true model, else flip it
                if rng.random::<f64>() < sigmoid(dot(&truth, &d)) {
                    d
                } else {
                    d.iter().map(|x| -x).collect()
                }
            })
            .collect();
        let w = newton(&diffs, 0.0, false);
        for (a, b) in w.iter().zip(&truth) {
            assert!((a - b).abs() < 0.15, "{w:?} vs {truth:?}");
        }
        let objective = |w: &[f64]| diffs.iter().map(|d| sigmoid(dot(w, d)).ln()).sum::<f64>();
        for j in 0..3 {
            let mut up = w.clone();
            up[j] += 1e-5;
            assert!(objective(&up) <= objective(&w) + 1e-6, "not a maximum along {j}");
        }
        let nonneg = newton(&diffs, 0.0, true);
        assert!(nonneg.iter().all(|&x| x >= 0.0) && nonneg[0] > 1.0, "{nonneg:?}");
    }

    #[test]
    fn a_fitted_model_prefers_what_its_labels_prefer_and_round_trips() {
        let c = spec("[[feature]]\nkind = \"regex_count\"\nname = \"polite\"\npattern = \"please\"\n[[feature]]\nkind = \"words\"\n");
        let pairs: Vec<(String, String, String)> = (0..20)
            .map(|i| {
                let filler = "word ".repeat(i % 5);
                (format!("q{i}"), format!("please {filler}"), format!("no {filler}"))
            })
            .collect();
        let m = FeatureModel::fit(&c, &pairs).unwrap();
        assert_eq!(m.train_accuracy, 1.0);
        assert!(m.weights[0] > 0.0, "{:?}", m.weights);
        let s = m.score_texts(&[("q".into(), "please".into()), ("q".into(), "no".into())]).unwrap();
        assert!(s[0] > s[1]);
        let back: FeatureModel = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
