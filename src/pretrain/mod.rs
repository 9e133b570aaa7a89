//! MAE pre-training (He et al. 2022) on the shared run layer: its config and the `Pretraining`
//! task, which writes a run directory (with online kNN per block and reconstructions) and exports
//! the encoder for `mimr info` / `mimr refine`.

pub mod config;
pub mod monitor;
pub mod run;
