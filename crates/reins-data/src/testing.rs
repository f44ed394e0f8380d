//! Helpers for tests that use data outside the repository.

use std::path::PathBuf;

/// The shared data folder: `$REINS_SHARED_DIR`, else `<workspace root>/../shared` if it
/// exists. `None` when neither is there (tests then print "skipped: ../shared not found").
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("REINS_SHARED_DIR") {
        let d = PathBuf::from(d);
        if d.is_dir() {
            return Some(d);
        }
    }
    // crates/reins-data -> workspace root -> ../shared
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let d = root.join("../shared");
    d.is_dir().then(|| d.canonicalize().unwrap_or(d))
}

/// The repository's `fixtures/hf` folder.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf")
}
