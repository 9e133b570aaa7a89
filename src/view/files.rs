//! The files a run log points at (snapshots, the thumbnail atlas and its index), read through
//! one small trait so the viewer works on a run directory, on bytes in memory, or later the web.

use super::source::run_file;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Reads a file of the run by its path relative to the run (as the log names it).
pub trait RunFiles: Send + Sync {
    /// The file's bytes, or a message saying why it cannot be read.
    fn read(&self, rel: &str) -> Result<Vec<u8>, String>;
}

/// Files of a run directory on disk (paths that leave the directory are refused).
pub struct DirFiles {
    dir: PathBuf,
}

impl DirFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl RunFiles for DirFiles {
    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        let path = run_file(&self.dir, rel)
            .ok_or_else(|| format!("{rel}: not a path inside the run directory"))?;
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Files held in memory (tests, a web build that fetched them).
#[derive(Default)]
pub struct MemoryFiles {
    files: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryFiles {
    pub fn insert(&self, rel: impl Into<String>, bytes: Vec<u8>) {
        if let Ok(mut f) = self.files.lock() {
            f.insert(rel.into(), bytes);
        }
    }
}

impl RunFiles for MemoryFiles {
    fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        let files = self
            .files
            .lock()
            .map_err(|_| "file store poisoned".to_string())?;
        files
            .get(rel)
            .cloned()
            .ok_or_else(|| format!("{rel}: no such file"))
    }
}
