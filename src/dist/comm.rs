//! The collective operations data-parallel training needs, as a trait with a single-process
//! implementation; `dist::mpi` implements it over MPI. Helpers built on them live here too.

use super::launch::{Launch, Launcher};
use anyhow::{Result, bail};
use std::sync::Arc;

/// A group of ranks that run the same program in lock step. Every rank must call the same
/// collectives in the same order, from the thread that connected. Failures inside the engine
/// end the whole job (MPI's default error handler) rather than return: nothing can hang.
pub trait Comm: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// The rank among the processes on this machine (picks its GPU).
    fn local_rank(&self) -> usize;
    /// Every rank's `send` (the same length on every rank), concatenated in rank order.
    fn all_gather_f32(&self, send: &[f32]) -> Vec<f32>;
    /// As [`Comm::all_gather_f32`], for 64-bit integers.
    fn all_gather_u64(&self, send: &[u64]) -> Vec<u64>;
    /// Element-wise sum over ranks, in place; the result is the same on every rank.
    fn all_reduce_sum(&self, buf: &mut [f32]);
    /// Replaces `bytes` on every rank with rank 0's.
    fn broadcast(&self, bytes: &mut Vec<u8>);
    /// Ends every rank of the job with exit code `code` (after an error on this rank).
    fn abort(&self, code: i32) -> !;
}

/// One process on its own: every collective is the identity.
#[derive(Debug, Default, Clone, Copy)]
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn all_gather_f32(&self, send: &[f32]) -> Vec<f32> {
        send.to_vec()
    }
    fn all_gather_u64(&self, send: &[u64]) -> Vec<u64> {
        send.to_vec()
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) {}
    fn broadcast(&self, _bytes: &mut Vec<u8>) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Joins the job `launch` describes: [`Single`] for one process, MPI for several.
pub fn connect(launch: Launch) -> Result<Arc<dyn Comm>> {
    if launch.size == 1 {
        return Ok(Arc::new(Single));
    }
    connect_mpi(launch)
}

#[cfg(feature = "mpi")]
fn connect_mpi(launch: Launch) -> Result<Arc<dyn Comm>> {
    Ok(Arc::new(super::mpi::Mpi::init(launch)?))
}

#[cfg(not(feature = "mpi"))]
fn connect_mpi(launch: Launch) -> Result<Arc<dyn Comm>> {
    bail!("{}", without_mpi(launch))
}

/// The error of a multi-process launch of a build without the `mpi` feature.
pub fn without_mpi(launch: Launch) -> String {
    let by = match launch.launcher {
        Launcher::OpenMpi => "mpirun (OpenMPI)",
        Launcher::Pmi => "a PMI launcher (mpiexec)",
        Launcher::Slurm => "srun (SLURM)",
        Launcher::None => "no launcher",
    };
    format!(
        "this process is rank {} of {} started by {by}, but this mimr was built without the `mpi` feature: \
         rebuild with `cargo build --release --features mpi` (needs OpenMPI and libclang: \
         apt-get install libopenmpi-dev openmpi-bin libclang-dev), or start a single process",
        launch.rank, launch.size
    )
}

/// Rank 0's `value` on every rank (`None` on the others).
pub fn broadcast_json<T: serde::Serialize + serde::de::DeserializeOwned>(
    comm: &dyn Comm,
    value: Option<&T>,
) -> Result<T> {
    let mut bytes = match value {
        Some(v) if comm.rank() == 0 => serde_json::to_vec(v)?,
        None if comm.rank() == 0 => bail!("internal: rank 0 has nothing to broadcast"),
        _ => Vec::new(),
    };
    comm.broadcast(&mut bytes);
    Ok(serde_json::from_slice(&bytes)?)
}

/// Rank 0's decision `flag` on every rank (stop requests: all ranks stop after the same step).
pub fn leader_says(comm: &dyn Comm, flag: bool) -> bool {
    if comm.size() == 1 {
        return flag;
    }
    let mut b = vec![u8::from(flag)];
    comm.broadcast(&mut b);
    b.first() == Some(&1)
}

/// Checks that every rank holds the same `bytes` (their 64-bit FNV-1a digests are compared); the
/// error names the first rank that differs from rank 0, with `what` it was.
pub fn ensure_same(comm: &dyn Comm, what: &str, bytes: &[u8]) -> Result<()> {
    let all = comm.all_gather_u64(&[crate::inspect::cache::fnv1a(bytes)]);
    match all.iter().position(|&d| d != all[0]) {
        None => Ok(()),
        Some(r) => bail!("rank {r}'s {what} differs from rank 0's"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_is_the_identity() {
        let c = Single;
        assert_eq!(c.all_gather_f32(&[1.0, 2.0]), vec![1.0, 2.0]);
        let mut b = vec![3.0];
        c.all_reduce_sum(&mut b);
        assert_eq!(b, vec![3.0]);
        assert!(leader_says(&c, true) && !leader_says(&c, false));
        let v: Vec<u32> = broadcast_json(&c, Some(&vec![1u32, 2])).unwrap();
        assert_eq!(v, vec![1, 2]);
        ensure_same(&c, "config", b"x").unwrap();
    }

    #[test]
    fn a_multi_process_launch_without_the_feature_says_how_to_fix_it() {
        let l = Launch {
            rank: 1,
            size: 2,
            local_rank: 1,
            launcher: Launcher::OpenMpi,
        };
        let msg = without_mpi(l);
        assert!(
            msg.contains("rank 1 of 2") && msg.contains("--features mpi"),
            "{msg}"
        );
        #[cfg(not(feature = "mpi"))]
        assert_eq!(format!("{:#}", connect(l).err().unwrap()), msg);
    }
}
