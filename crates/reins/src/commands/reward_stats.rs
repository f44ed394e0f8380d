//! `reins reward-stats fit|interval|select` (and `consistency`, in [`super::reward_consistency`]): the statistical toolkit for a trained reward model
//! (Liu, Shi & Sun, arXiv:2604.02507). `fit` puts a Laplace (or Fisher) posterior on the score
//! head from labelled pairs (`head_posterior.json` + `.safetensors`); `interval` writes
//! confidence intervals of `r(chosen) − r(rejected)`; `select` picks the unlabelled pairs whose
//! label the head is least sure of, in the feedback app's import format. The same posterior
//! gives the pessimistic reward `lcb:<λ>:<dir>` of `reins best-of-n` and the online trainers.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use reins_data::formats::{load, ConvertOptions};
use reins_data::io::check_output;
use reins_data::tokenize::reward::{tokenize_reward, tokenize_reward_response};
use reins_data::{HfTokenizer, Record, Text};
use reins_model::{LoadOptions, Model};
use reins_train::config::FlatConfig;
use reins_train::statistics::features::{pooled_features, score_head_weights};
use reins_train::statistics::{
    load_posterior, save_posterior, select_pairs, Acquisition, Curvature, HeadPosterior, Link, PairFeatures,
    POSTERIOR_FILE,
};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum RewardStatsCmd {
    /// Fit the score head's posterior N(w, Σ) on labelled pairs (the RM's training pairs).
    Fit {
        /// The reward model folder (a `reins reward` checkpoint or any *ForSequenceClassification).
        #[arg(long)]
        model: PathBuf,
        /// Labelled pairs: any file `reins data` reads (prompt/chosen/rejected, margin, strength).
        #[arg(long)]
        pairs: PathBuf,
        /// The link the RM was trained with: bradley_terry or thurstone (default: the `link` of
        /// the run's config.toml beside a `reins reward` checkpoint, else bradley_terry).
        #[arg(long)]
        link: Option<String>,
        /// Precision τ of the Gaussian prior on the head's weights.
        #[arg(long, default_value_t = 1.0)]
        prior_precision: f64,
        /// hessian (the Laplace approximation) or fisher (expected information).
        #[arg(long, default_value = "hessian")]
        curvature: String,
        /// Folder for head_posterior.json and .safetensors (default: the model folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing posterior.
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
    },
    /// Confidence intervals of r(chosen) − r(rejected) for each pair of a file (JSONL out).
    Interval {
        /// A folder with head_posterior.json (from `fit`).
        #[arg(long)]
        posterior: PathBuf,
        /// Pairs: any file `reins data` reads with prompt/chosen/rejected.
        #[arg(long)]
        pairs: PathBuf,
        /// Two-sided level of the interval.
        #[arg(long, default_value_t = 0.95)]
        level: f64,
        /// JSONL: record, id, difference, std, lower, upper, level, p_chosen.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
    },
    /// The k unlabelled pairs with the largest predictive uncertainty, to label next.
    Select {
        /// A folder with head_posterior.json (from `fit`).
        #[arg(long)]
        posterior: PathBuf,
        /// Unlabelled pairs, JSONL in the feedback import format:
        /// {"prompt": "...", "responses": ["a", "b"], "id"?: ...}.
        #[arg(long)]
        pool: PathBuf,
        /// How many pairs to pick.
        #[arg(long)]
        k: usize,
        /// variance (largest Var(r(a) − r(b))) or d_optimal (greedy information gain).
        #[arg(long, default_value = "variance")]
        acquisition: String,
        /// The picked pool lines, best first, each with an `uncertainty` object (JSONL).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
    },
    /// Response and instruction consistency on Contrast Instructions built from a preference set.
    Consistency(super::reward_consistency::ConsistencyArgs),
}

pub fn run(cmd: RewardStatsCmd) -> Result<()> {
    match cmd {
        RewardStatsCmd::Consistency(a) => super::reward_consistency::run(a),
        RewardStatsCmd::Fit { model, pairs, link, prior_precision, curvature, out, force, batch_size } => {
            let link = resolve_link(link.as_deref(), &model)?;
            let curvature = match curvature.as_str() {
                "hessian" => Curvature::Hessian,
                "fisher" => Curvature::Fisher,
                other => bail!("--curvature `{other}`: use hessian or fisher"),
            };
            let out = out.unwrap_or_else(|| model.clone());
            if out.join(POSTERIOR_FILE).exists() && !force {
                bail!("{} exists; pass --force to replace it", out.join(POSTERIOR_FILE).display());
            }
            let rm = Loaded::open(&model)?;
            let records = load(&pairs, None, &ConvertOptions::default())?.records;
            let (feats, _) = rm.pair_features(&records, batch_size, &pairs)?;
            let w = score_head_weights(&rm.model)?;
            let post = HeadPosterior::fit(link, curvature, &w, &feats, prior_precision)?;
            let path = save_posterior(&out, &model, &post)?;
            let zeros = vec![0.0; post.dim];
            let stds: Vec<f64> = feats
                .diffs
                .iter()
                .map(|g| post.difference(g, &zeros).map(|d| d.std))
                .collect::<std::result::Result<_, _>>()?;
            println!(
                "head posterior of {} ({} link, {:?}, τ = {prior_precision}) from {} pairs, D = {}: mean std of \
                 r(chosen) − r(rejected) {:.4}; wrote {}",
                model.display(),
                link.name(),
                curvature,
                post.num_pairs,
                post.dim,
                stds.iter().sum::<f64>() / stds.len().max(1) as f64,
                path.display()
            );
            Ok(())
        }
        RewardStatsCmd::Interval { posterior, pairs, level, out, force, batch_size } => {
            if !(level > 0.0 && level < 1.0) {
                bail!("--level must lie in (0, 1), e.g. 0.95");
            }
            check_output(&out, &[&pairs], force)?;
            let (model_dir, post) = load_posterior(&posterior)?;
            let rm = Loaded::open(&model_dir)?;
            let records = load(&pairs, None, &ConvertOptions::default())?.records;
            let (_, rows) = rm.pair_features(&records, batch_size, &pairs)?;
            let mut w = create(&out)?;
            let mut excludes_zero = 0usize;
            for (rec, (a, b)) in &rows {
                let d = post.difference(a, b)?;
                let (lo, hi) = d.interval(level);
                excludes_zero += usize::from(lo > 0.0 || hi < 0.0);
                let id = records[*rec].meta().id.clone();
                let line = json!({
                    "record": rec + 1, "id": id, "difference": d.mean, "std": d.std,
                    "lower": lo, "upper": hi, "level": level, "p_chosen": d.preference_prob(post.link),
                });
                writeln!(w, "{line}").with_context(|| format!("writing {}", out.display()))?;
            }
            w.flush()?;
            println!(
                "{} pairs: {excludes_zero} with a {:.0} % interval of r(chosen) − r(rejected) that excludes 0; wrote {}",
                rows.len(),
                100.0 * level,
                out.display()
            );
            Ok(())
        }
        RewardStatsCmd::Select { posterior, pool, k, acquisition, out, force, batch_size } => {
            let how = Acquisition::parse(&acquisition)?;
            if k == 0 {
                bail!("--k must be at least 1");
            }
            check_output(&out, &[&pool], force)?;
            let (model_dir, post) = load_posterior(&posterior)?;
            let rm = Loaded::open(&model_dir)?;
            let lines = read_pool(&pool)?;
            let mut seqs = Vec::with_capacity(2 * lines.len());
            for (_, v) in &lines {
                let prompt = Text::Plain(v["prompt"].as_str().unwrap_or_default().to_string());
                for r in v["responses"].as_array().into_iter().flatten() {
                    let resp = Text::Plain(r.as_str().unwrap_or_default().to_string());
                    seqs.push(tokenize_reward_response(&rm.tok, &prompt, &resp)?);
                }
            }
            let (phi, _) = pooled_features(&rm.model, &seqs, rm.pad, batch_size)?;
            let diffs: Vec<Vec<f64>> =
                phi.chunks(2).map(|ab| ab[0].iter().zip(&ab[1]).map(|(a, b)| a - b).collect()).collect();
            let picked = select_pairs(&post, &diffs, k, how)?;
            let mut w = create(&out)?;
            for (rank, s) in picked.iter().enumerate() {
                let mut line = lines[s.index].1.clone();
                line["uncertainty"] = json!({
                    "rank": rank + 1, "pool_line": lines[s.index].0, "acquisition": acquisition,
                    "score": s.score, "difference": s.mean, "std": s.std,
                });
                writeln!(w, "{line}").with_context(|| format!("writing {}", out.display()))?;
            }
            w.flush()?;
            println!(
                "picked {} of {} pool pairs by {acquisition}; wrote {} (import it with `reins feedback import`)",
                picked.len(),
                lines.len(),
                out.display()
            );
            Ok(())
        }
    }
}

/// `--link`, checked against the run's `config.toml` (a `reins reward` checkpoint's parent
/// folder) when that file names a link; without `--link`, that link or Bradley–Terry.
fn resolve_link(given: Option<&str>, model: &Path) -> Result<Link> {
    let cfg = [model.join("config.toml"), model.join("../config.toml")].into_iter().find(|p| p.is_file());
    let trained = match &cfg {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let flat = FlatConfig::from_toml(&text).with_context(|| p.display().to_string())?;
            flat.table.get("link").and_then(Value::as_str).map(parse_link).transpose()?
        }
        None => None,
    };
    match (given.map(parse_link).transpose()?, trained) {
        (Some(g), Some(t)) if g != t => bail!(
            "--link {} but {} says the model was trained with link = \"{}\"; drop --link or pass --link {}",
            g.name(),
            cfg.map(|p| p.display().to_string()).unwrap_or_default(),
            t.name(),
            t.name()
        ),
        (Some(l), _) | (None, Some(l)) => Ok(l),
        (None, None) => Ok(Link::BradleyTerry),
    }
}

fn parse_link(s: &str) -> Result<Link> {
    match s {
        "bradley_terry" => Ok(Link::BradleyTerry),
        "thurstone" => Ok(Link::Thurstone),
        other => bail!("--link `{other}`: use bradley_terry or thurstone"),
    }
}

fn create(p: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    Ok(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?))
}

/// A reward model with its tokenizer.
pub(crate) struct Loaded {
    pub(crate) model: Model,
    pub(crate) tok: HfTokenizer,
    pub(crate) pad: u32,
}

/// Pair features and, per kept record, its index and `(φ(chosen), φ(rejected))`.
type PairRows = Vec<(usize, (Vec<f64>, Vec<f64>))>;

impl Loaded {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let device = reins_model::default_device()?;
        let model = Model::load(dir, &device, &LoadOptions::default())
            .with_context(|| format!("reward model {}", dir.display()))?;
        if model.score.is_none() {
            bail!("{}: not a reward model (no score head); use a `reins reward` checkpoint", dir.display());
        }
        let tok = HfTokenizer::from_dir(dir).with_context(|| format!("tokenizer of {}", dir.display()))?;
        let pad = model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0);
        Ok(Loaded { model, tok, pad })
    }

    fn pair_features(&self, records: &[Record], batch_size: usize, file: &Path) -> Result<(PairFeatures, PairRows)> {
        let mut seqs = Vec::new();
        let mut kept = Vec::new();
        let (mut margins, mut targets) = (Vec::new(), Vec::new());
        for (i, r) in records.iter().enumerate() {
            let Record::Preference(p) = r else { continue };
            let ids = tokenize_reward(&self.tok, p).with_context(|| format!("{}: record {}", file.display(), i + 1))?;
            seqs.push(ids.chosen_ids);
            seqs.push(ids.rejected_ids);
            margins.push(ids.margin.unwrap_or(0.0));
            targets.push(ids.strength.unwrap_or(1.0));
            kept.push(i);
        }
        if kept.is_empty() {
            bail!("{}: no preference pairs (prompt/chosen/rejected)", file.display());
        }
        let (phi, _) = pooled_features(&self.model, &seqs, self.pad, batch_size)?;
        let mut rows = Vec::with_capacity(kept.len());
        let mut diffs = Vec::with_capacity(kept.len());
        for (rec, ab) in kept.into_iter().zip(phi.chunks(2)) {
            diffs.push(ab[0].iter().zip(&ab[1]).map(|(a, b)| a - b).collect());
            rows.push((rec, (ab[0].clone(), ab[1].clone())));
        }
        Ok((PairFeatures { diffs, margins: Some(margins), targets: Some(targets) }, rows))
    }
}

/// The pool's lines `(line number, object)`: each needs a string `prompt` and exactly two
/// string `responses`; a bad line is an error naming it.
fn read_pool(path: &Path) -> Result<Vec<(usize, Value)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let ok_prompt = v.get("prompt").is_some_and(Value::is_string);
        let ok_resp = v
            .get("responses")
            .and_then(Value::as_array)
            .is_some_and(|r| r.len() == 2 && r.iter().all(Value::is_string));
        if !ok_prompt || !ok_resp {
            bail!("{}: need {{\"prompt\": \"...\", \"responses\": [\"a\", \"b\"]}} (a string prompt and two string responses)", at());
        }
        out.push((i + 1, v));
    }
    if out.is_empty() {
        bail!("{}: the pool has no pairs", path.display());
    }
    Ok(out)
}
