//! MAE pre-training (He et al. 2022) on the shared run layer: its config and the `Pretraining`
//! task, which writes a run directory and exports the encoder for `mimr info` / `mimr refine`.

pub mod config;
pub mod run;
