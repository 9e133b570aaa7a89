//! Data-parallel refinement over several processes (issue 16, ARCHITECTURE.md "Scale-out"):
//! the launch, the collectives (MPI behind the `mpi` feature), feature rows and gradients.

pub mod comm;
pub mod grads;
pub mod launch;
#[cfg(feature = "mpi")]
mod mpi;
pub mod rows;

pub use comm::{Comm, Single, broadcast_json, connect, ensure_same, leader_says};
pub use launch::{Launch, Launcher};
