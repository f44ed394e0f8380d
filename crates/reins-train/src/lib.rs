//! reins-train: see the crate description in Cargo.toml.
