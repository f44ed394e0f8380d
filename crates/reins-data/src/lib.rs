//! reins-data: see the crate description in Cargo.toml.
