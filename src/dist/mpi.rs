//! [`Comm`] over MPI (the `mpi` feature): the world communicator of the job `mpirun`/`srun`
//! started; MPI is finalised when the last handle is dropped.

use super::comm::Comm;
use super::launch::Launch;
use anyhow::{Result, bail, ensure};
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

/// The MPI world of this job. All calls come from the thread that initialised MPI
/// (`MPI_THREAD_FUNNELED`); the loader's worker threads never call MPI.
pub struct Mpi {
    rank: usize,
    size: usize,
    local_rank: usize,
    _universe: mpi::environment::Universe,
}

impl Mpi {
    /// Initialises MPI and checks that it agrees with the launcher's environment.
    pub fn init(launch: Launch) -> Result<Self> {
        let Some((universe, _level)) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        else {
            bail!("MPI was already initialised in this process");
        };
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        ensure!(
            rank == launch.rank && size == launch.size,
            "MPI says rank {rank} of {size}, the launcher's environment says rank {} of {}: \
             was mimr started by a different MPI than the one it was built with?",
            launch.rank,
            launch.size
        );
        Ok(Self {
            rank,
            size,
            local_rank: launch.local_rank,
            _universe: universe,
        })
    }
}

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

impl Comm for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn all_gather_f32(&self, send: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; send.len() * self.size];
        world().all_gather_into(send, &mut out[..]);
        out
    }
    fn all_gather_u64(&self, send: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; send.len() * self.size];
        world().all_gather_into(send, &mut out[..]);
        out
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let send = buf.to_vec();
        world().all_reduce_into(&send[..], buf, SystemOperation::sum());
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let w = world();
        let root = w.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }
    fn abort(&self, code: i32) -> ! {
        world().abort(code)
    }
}
