//! The statistical toolkit for reward models (Liu, Shi & Sun, "Reinforcement Learning from
//! Human Feedback: A Statistical Perspective", arXiv:2604.02507): link functions, the
//! Laplace/Fisher posterior of the score head on frozen features, confidence intervals of
//! reward differences, pessimistic (lower-confidence-bound) rewards and uncertainty-driven
//! selection of the next pairs to label. Plain `f64` math on host vectors: the head is one
//! `D`-vector, so every matrix here is `D × D`.

pub mod active;
pub mod correlation;
pub mod features;
pub mod laplace;
pub mod linalg;
pub mod link;
pub mod pessimism;
pub mod posterior_file;
pub mod rationality;

pub use active::{select_pairs, Acquisition, Selected};
pub use correlation::pearson;
pub use laplace::{fit_map, Curvature, HeadPosterior, PairFeatures, RewardDifference};
pub use link::Link;
pub use posterior_file::{load_posterior, save_posterior, POSTERIOR_FILE};
pub use rationality::{fit_map_rationality, rationality_step, GapObservation, Rationality, RationalityFit};
