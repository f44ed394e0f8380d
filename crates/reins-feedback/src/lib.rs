//! reins-feedback: see the crate description in Cargo.toml.
