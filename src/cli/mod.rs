//! TODO

pub mod stats;
