//! Stamps the binary with the commit it was built from (`REINS_BUILD_COMMIT`), so a lab
//! result names the code that produced it, not whatever the working directory holds when the
//! binary runs. `+dirty` marks a build from a working tree with uncommitted changes to
//! tracked files; `unknown` a build outside a git checkout (a crates.io source, say).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}+dirty")
            } else {
                c
            }
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=REINS_BUILD_COMMIT={commit}");
    // Rerun when HEAD moves (a commit, a checkout) or a tracked file changes (the dirty flag).
    for path in ["HEAD", "index", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &head_ref]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    // Every crate's sources: an edit makes the tree dirty without touching the index.
    println!("cargo:rerun-if-changed=..");
}
