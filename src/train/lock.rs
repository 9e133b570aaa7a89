//! The run directory's exclusive lock (`run.lock`, an OS file lock holding the owner's PID): a
//! second process gets an error naming that PID; the OS drops the lock of a killed process.

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held for as long as a process writes a run directory; released on drop or process exit.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes `dir/run.lock`. A lock left by a killed process is free again (the OS releases it
    /// with the process), so it is simply taken over and its PID replaced.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("run.lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.take(64).read_to_string(&mut owner);
                let owner = owner.trim();
                let who = if owner.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {owner}")
                };
                bail!(
                    "run dir {} is in use by {who} (lock file {}): wait for it to finish or stop it, or use another run dir",
                    dir.display(),
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(pid.as_bytes()))
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_pid_and_a_released_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = format!("{:#}", RunLock::acquire(dir.path()).unwrap_err());
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        // a stale PID left in the file (e.g. by a killed process) does not block
        std::fs::write(dir.path().join("run.lock"), "999999").unwrap();
        let again = RunLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(pid, std::process::id().to_string());
    }
}
