//! The refinement method (method.md §2–§4): its config, ID heads, the NN queue, the NNA loss,
//! schedules, the optimizer, one training step, its checkpoint state and the `Refinement` task.

pub mod checkpoint;
pub mod config;
mod data_parallel;
pub mod groups;
pub mod heads;
pub mod loss;
pub mod nn_thumbs;
pub mod online_eval;
pub mod optim;
pub mod queue;
pub mod run;
pub mod schedule;
pub mod trainer;
