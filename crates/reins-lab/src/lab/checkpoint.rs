//! Each finished seed's outcome, saved beside the run (`seed-N/outcome.json`) with the
//! experiment id and config hash it belongs to, so an interrupted full run resumes instead of
//! starting over. A file for another experiment or other settings is ignored, never mixed in.
//! JSON has no NaN (serde_json writes null), so a seed with a non-finite value does not load
//! back and is simply run again.

use serde::{Deserialize, Serialize};
use std::path::Path;

use super::SeedOutcome;
use crate::LabError;

#[derive(Serialize, Deserialize)]
struct Saved {
    id: String,
    config_hash: String,
    outcome: SeedOutcome,
}

/// The outcome saved at `path` for experiment `id` under config `hash`, if there is one.
pub(super) fn load(path: &Path, id: &str, hash: &str) -> Option<SeedOutcome> {
    let text = std::fs::read_to_string(path).ok()?;
    let saved: Saved = serde_json::from_str(&text).ok()?;
    (saved.id == id && saved.config_hash == hash).then_some(saved.outcome)
}

/// Saves `outcome` at `path` (creating its folder).
pub(super) fn save(path: &Path, id: &str, hash: &str, outcome: &SeedOutcome) -> Result<(), LabError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
    }
    let saved = Saved { id: id.to_string(), config_hash: hash.to_string(), outcome: outcome.clone() };
    let text = serde_json::to_string_pretty(&saved).expect("checkpoint serializes");
    std::fs::write(path, text).map_err(|e| LabError::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_loads_back_only_for_its_experiment_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed-0").join("outcome.json");
        let o = SeedOutcome { arms: vec![("a".into(), 1.5)], statistic: 0.25, ..Default::default() };
        save(&path, "exp", "h1", &o).unwrap();
        assert_eq!(load(&path, "exp", "h1"), Some(o.clone()));
        assert_eq!(load(&path, "other", "h1"), None);
        assert_eq!(load(&path, "exp", "h2"), None);
        // A non-finite value cannot round-trip through JSON: the seed runs again.
        let nan = SeedOutcome { statistic: f64::NAN, ..o };
        save(&path, "exp", "h1", &nan).unwrap();
        assert_eq!(load(&path, "exp", "h1"), None);
    }
}
