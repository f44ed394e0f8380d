//! `reins reward --set residual_of_features=DIR`: a neural reward model trained as the residual
//! of the feature reward model in DIR (from `reins reward-features`; Nath et al.,
//! arXiv:2402.15473, the "small learned residual" on domain-knowledge features). Each pair's
//! Bradley–Terry logit gets the feature model's score difference as a fixed offset, so the
//! network learns what the features leave unexplained; every checkpoint carries
//! `feature_rm.json`, and `reward = "residual:<checkpoint>"` scores `features + residual`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use reins_data::tokenize::reward::RewardIds;
use reins_data::Record;
use reins_train::rewards::features::{feature_offsets, FeatureModel, FeatureReward, FEATURE_MODEL_FILE};
use serde::{Deserialize, Serialize};

use super::plain;

/// The residual setting of `reins reward` (flat key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResidualArgs {
    /// Folder of a feature reward model (`feature_rm.json`); default none: a plain reward model.
    pub residual_of_features: Option<PathBuf>,
}

/// The feature model in `dir` and the file every checkpoint carries.
pub fn load(dir: &Path) -> Result<(FeatureModel, (String, String))> {
    let model =
        FeatureReward::load_model(dir).with_context(|| format!("residual_of_features = {:?}", dir.display()))?;
    let file = (FEATURE_MODEL_FILE.to_string(), serde_json::to_string_pretty(&model)? + "\n");
    Ok((model, file))
}

/// Adds the feature model's offset to every pair of `set` (indices into `records`): the pair's
/// margin becomes `margin − (r_f(chosen) − r_f(rejected))`, so the loss reads
/// `σ(Δs + Δr_f − margin)`.
pub fn add_offsets(model: &FeatureModel, records: &[Record], set: &mut [(usize, RewardIds)]) -> Result<()> {
    let mut pairs = Vec::with_capacity(set.len());
    for (i, _) in set.iter() {
        let Some(Record::Preference(p)) = records.get(*i) else {
            anyhow::bail!("residual_of_features: pair {} is not a preference record", i + 1);
        };
        pairs.push((plain(&p.prompt), plain(&p.chosen), plain(&p.rejected)));
    }
    for ((_, ids), offset) in set.iter_mut().zip(feature_offsets(model, &pairs)?) {
        ids.margin = Some(ids.margin.unwrap_or(0.0) - offset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reins_data::{Meta, Preference, Text};
    use reins_train::rewards::features::FeatureConfig;

    /// Each pair's margin becomes `margin − Δr_f`: one word-count feature of weight 1 (mean 0,
    /// deviation 1), so Δr_f is the difference in words.
    #[test]
    fn the_offset_is_subtracted_from_each_pairs_margin() {
        let model = FeatureModel {
            config: FeatureConfig::from_toml("[[feature]]\nkind = \"words\"\n", "test").unwrap(),
            names: vec!["words".into()],
            mean: vec![0.0],
            scale: vec![1.0],
            weights: vec![1.0],
            n_pairs: 0,
            train_accuracy: 0.0,
        };
        let pref = |c: &str, r: &str| {
            Record::Preference(Preference {
                prompt: Text::Plain("P".into()),
                chosen: Text::Plain(c.into()),
                rejected: Text::Plain(r.into()),
                margin: None,
                strength: None,
                reference: None,
                meta: Meta::default(),
            })
        };
        let records = [
            pref("a b c", "a"),
            Record::PromptOnly { prompt: Text::Plain("P".into()), meta: Meta::default() },
            pref("a", "a b"),
        ];
        let ids = |margin| RewardIds { chosen_ids: vec![1], rejected_ids: vec![2], margin, strength: None };
        let mut set = vec![(0, ids(None)), (2, ids(Some(0.5)))];
        add_offsets(&model, &records, &mut set).unwrap();
        assert_eq!(set[0].1.margin, Some(-2.0));
        assert_eq!(set[1].1.margin, Some(1.5));
        assert!(add_offsets(&model, &records, &mut [(1, ids(None))]).is_err(), "not a preference record");
    }
}
