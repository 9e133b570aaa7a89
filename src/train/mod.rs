//! The run layer every trainer shares (refinement now, MAE pre-training next): a locked run
//! directory, crash-safe checkpoint folders, the generic training loop, and probe thumbnails.

pub mod checkpoints;
pub mod driver;
pub mod lock;
pub mod run_dir;
pub mod state_file;
pub mod thumbnails;

pub use checkpoints::Checkpoints;
pub use driver::{Control, Outcome, Resume, Settings, StepReport, Task, run, run_ranked};
pub use run_dir::RunDir;

#[cfg(test)]
mod driver_tests;
