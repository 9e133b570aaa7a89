//! The refinement method (method.md §2–§4): ID heads, the NN queue, the NNA loss, schedules,
//! the optimizer, one training step, checkpoints, the run log and the `refine` driver.

pub mod checkpoint;
pub mod heads;
pub mod loss;
pub mod online_eval;
pub mod optim;
pub mod queue;
pub mod run;
pub mod runlog;
pub mod schedule;
pub mod trainer;
