//! Shared by the CLI tests (`#[path]`-included): run the `reins` binary from the repository
//! root and read what it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (commands run there, so `examples/` and `fixtures/` paths work).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `reins args…`; returns whether it succeeded and its stdout then stderr.
pub fn reins(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_reins")).args(args).current_dir(root()).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// Runs `reins args…`, failing the test with its output unless it succeeds.
pub fn ok(args: &[&str]) -> String {
    let (ok, text) = reins(args);
    assert!(ok, "reins {args:?} failed:\n{text}");
    text
}

/// The JSON lines of a file.
pub fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
