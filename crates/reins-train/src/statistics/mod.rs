//! The statistical toolkit for reward models (Liu, Shi & Sun, "Reinforcement Learning from
//! Human Feedback: A Statistical Perspective", arXiv:2604.02507): link functions of pairwise
//! preference models. Plain `f64` math.

pub mod link;

pub use link::Link;
