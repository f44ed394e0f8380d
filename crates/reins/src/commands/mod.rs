//! One module per subcommand; each maps its arguments to library calls.
pub mod bench;
pub mod best_of_n;
pub mod data;
pub mod generate;
pub mod lab;
pub mod online;
pub mod parity;
pub mod quickstart;
pub mod reward;
pub mod serve;
pub mod train;
#[cfg(test)]
mod trl_defaults;
