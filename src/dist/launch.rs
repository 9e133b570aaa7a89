//! Where this process sits in a multi-process job, read from the launcher's environment
//! (`mpirun`/`mpiexec` of OpenMPI or MPICH, SLURM's `srun`), before any MPI call is made.

use anyhow::{Context, Result, bail};

/// The program that started this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher: a plain single process.
    None,
    /// OpenMPI's `mpirun`/`mpiexec` (`OMPI_COMM_WORLD_*`).
    OpenMpi,
    /// A PMI launcher such as MPICH's Hydra (`PMI_RANK`, `PMI_SIZE`).
    Pmi,
    /// SLURM's `srun` (`SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`).
    Slurm,
}

/// This process's rank, the job's size and the rank on this machine (which picks the GPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub launcher: Launcher,
}

impl Launch {
    /// A single process, rank 0 of 1.
    pub fn single() -> Self {
        Self {
            rank: 0,
            size: 1,
            local_rank: 0,
            launcher: Launcher::None,
        }
    }

    /// The launch this process's environment describes.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The launch described by the variables `get` returns (tests pass their own).
    ///
    /// `srun` is recognised by `SLURM_STEP_NUM_TASKS`, which only job steps have: a batch
    /// script that runs mimr directly (without `srun`) is a single process.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let schemes = [
            (
                Launcher::OpenMpi,
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
            ),
            (Launcher::Pmi, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
            (
                Launcher::Slurm,
                "SLURM_PROCID",
                "SLURM_STEP_NUM_TASKS",
                "SLURM_LOCALID",
            ),
        ];
        for (launcher, rank, size, local) in schemes {
            let (Some(r), Some(s)) = (get(rank), get(size)) else {
                continue;
            };
            let num = |name: &str, v: &str| -> Result<usize> {
                v.trim()
                    .parse()
                    .with_context(|| format!("environment variable {name}={v:?} is not a count"))
            };
            let (rank_n, size_n) = (num(rank, &r)?, num(size, &s)?);
            if size_n == 0 || rank_n >= size_n {
                bail!("environment: {rank}={rank_n} is not a rank of {size}={size_n}");
            }
            let local_rank = match get(local) {
                Some(v) => num(local, &v)?,
                None => rank_n,
            };
            return Ok(Self {
                rank: rank_n,
                size: size_n,
                local_rank,
                launcher,
            });
        }
        Ok(Self::single())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        Launch::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn each_launcher_is_read() {
        assert_eq!(launch(&[]).unwrap(), Launch::single());
        let l = launch(&[
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ])
        .unwrap();
        assert_eq!((l.rank, l.size, l.local_rank), (3, 4, 1));
        assert_eq!(l.launcher, Launcher::OpenMpi);
        let l = launch(&[("PMI_RANK", "1"), ("PMI_SIZE", "2")]).unwrap();
        assert_eq!(
            (l.rank, l.size, l.local_rank, l.launcher),
            (1, 2, 1, Launcher::Pmi)
        );
        let l = launch(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_LOCALID", "1"),
        ])
        .unwrap();
        assert_eq!((l.rank, l.size, l.local_rank), (5, 8, 1));
    }

    #[test]
    fn a_batch_script_without_srun_is_one_process() {
        let l = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8")]).unwrap();
        assert_eq!(l, Launch::single());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = launch(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")]).unwrap_err();
        assert!(format!("{e:#}").contains("PMI_RANK=\"x\""), "{e:#}");
        let e = launch(&[("PMI_RANK", "2"), ("PMI_SIZE", "2")]).unwrap_err();
        assert!(format!("{e:#}").contains("PMI_RANK=2"), "{e:#}");
    }
}
