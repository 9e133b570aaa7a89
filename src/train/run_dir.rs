//! A run directory opened for writing: created, locked against a second writer, its checkpoint
//! folders recovered, and its `config.toml` checked against a resumed run's before it is replaced.

use super::checkpoints::Checkpoints;
use super::lock::RunLock;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Exclusive access to one run directory for as long as it lives.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    pub checkpoints: Checkpoints,
    _lock: RunLock,
}

impl RunDir {
    /// Creates or reopens `path` and takes its lock. When it already holds checkpoints (a
    /// resume), `same_run` is given the stored `config.toml` and must accept it; then the
    /// resolved `config_toml` is written atomically.
    pub fn open(
        path: &Path,
        config_toml: &str,
        same_run: impl FnOnce(&str) -> Result<()>,
    ) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create run dir {}", path.display()))?;
        let lock = RunLock::acquire(path)?;
        let checkpoints = Checkpoints::open(path)?;
        let cfg = path.join("config.toml");
        if cfg.exists() && checkpoints.latest()?.is_some() {
            let old = std::fs::read_to_string(&cfg)
                .with_context(|| format!("cannot read {}", cfg.display()))?;
            same_run(&old).with_context(|| {
                format!(
                    "{} holds a run started with another config ({}); resuming would mix runs: use another run dir",
                    path.display(),
                    cfg.display()
                )
            })?;
        }
        crate::fsutil::write_atomic(&cfg, config_toml.as_bytes())?;
        Ok(Self {
            path: path.to_path_buf(),
            checkpoints,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` joined to the run directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}
