//! A head posterior on disk: `head_posterior.json` (link, curvature, prior, sizes and the
//! reward model it belongs to) beside `head_posterior.safetensors` (`weight [D]` and
//! `covariance [D, D]` in f64; `D × D` numbers are too many for JSON at real hidden sizes).
//! Written by `reins reward-stats fit`; read by the LCB reward source and the interval and
//! selection commands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::laplace::{Curvature, HeadPosterior};
use super::link::Link;
use crate::{Result, TrainError};

/// The metadata file's name.
pub const POSTERIOR_FILE: &str = "head_posterior.json";
const TENSORS_FILE: &str = "head_posterior.safetensors";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    /// The reward model folder; relative paths are relative to this file's folder (`.` when
    /// the posterior sits inside the model folder).
    model: PathBuf,
    link: Link,
    curvature: Curvature,
    prior_precision: f64,
    num_pairs: usize,
    dim: usize,
}

fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Input(format!("{}: {e}", path.display()))
}

/// Writes `post` into `dir` for the reward model at `model` (stored relative to `dir` when
/// it is `dir` itself, else absolute). Returns the metadata file's path.
pub fn save_posterior(dir: &Path, model: &Path, post: &HeadPosterior) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let same = dir.canonicalize().ok().is_some_and(|d| model.canonicalize().ok() == Some(d));
    let model = if same { PathBuf::from(".") } else { model.canonicalize().map_err(|e| io(model, e))? };
    let meta = Meta {
        model,
        link: post.link,
        curvature: post.curvature,
        prior_precision: post.prior_precision,
        num_pairs: post.num_pairs,
        dim: post.dim,
    };
    let d = post.dim;
    let tensors = HashMap::from([
        ("weight", Tensor::from_vec(post.weight.clone(), d, &Device::Cpu)?),
        ("covariance", Tensor::from_vec(post.covariance.clone(), (d, d), &Device::Cpu)?),
    ]);
    let tpath = dir.join(TENSORS_FILE);
    candle_core::safetensors::save(&tensors, &tpath).map_err(|e| io(&tpath, e))?;
    let path = dir.join(POSTERIOR_FILE);
    let json = serde_json::to_string_pretty(&meta).map_err(|e| io(&path, e))?;
    std::fs::write(&path, json + "\n").map_err(|e| io(&path, e))?;
    Ok(path)
}

/// Reads the posterior in `dir` and the reward model folder it belongs to.
pub fn load_posterior(dir: &Path) -> Result<(PathBuf, HeadPosterior)> {
    let path = dir.join(POSTERIOR_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        TrainError::Input(format!(
            "{}: {e}; fit one with `reins reward-stats fit --model RM_DIR --pairs PAIRS.jsonl --out {}`",
            path.display(),
            dir.display()
        ))
    })?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
    let tpath = dir.join(TENSORS_FILE);
    let t = candle_core::safetensors::load(&tpath, &Device::Cpu).map_err(|e| io(&tpath, e))?;
    let get = |k: &str| -> Result<Vec<f64>> {
        let x = t.get(k).ok_or_else(|| io(&tpath, format!("no `{k}` tensor")))?;
        Ok(x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    };
    let (weight, covariance) = (get("weight")?, get("covariance")?);
    if weight.len() != meta.dim || covariance.len() != meta.dim * meta.dim {
        return Err(io(&tpath, format!("sizes do not match dim = {} in {}", meta.dim, path.display())));
    }
    let model = if meta.model.is_absolute() { meta.model } else { dir.join(meta.model) };
    let post = HeadPosterior {
        link: meta.link,
        curvature: meta.curvature,
        prior_precision: meta.prior_precision,
        num_pairs: meta.num_pairs,
        dim: meta.dim,
        weight,
        covariance,
    };
    Ok((model, post))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::Input(e.to_string()))?;
        let post = HeadPosterior {
            link: Link::Thurstone,
            curvature: Curvature::Fisher,
            prior_precision: 0.5,
            num_pairs: 3,
            dim: 2,
            weight: vec![0.25, -1.5],
            covariance: vec![2.0, 0.1, 0.1, 1.0],
        };
        save_posterior(dir.path(), dir.path(), &post)?;
        let (model, back) = load_posterior(dir.path())?;
        assert_eq!(back, post);
        assert_eq!(model, dir.path().join("."));
        let missing = load_posterior(&dir.path().join("nowhere")).unwrap_err().to_string();
        assert!(missing.contains("reins reward-stats fit"), "{missing}");
        Ok(())
    }
}
