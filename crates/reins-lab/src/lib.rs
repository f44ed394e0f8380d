//! reins-lab: see the crate description in Cargo.toml.
