//! The append-only writer of `events.jsonl`: one event per line, flushed per event; a resume cuts
//! the file back to the byte offset stored in the checkpoint it resumes from.

use super::{Event, FILE, Header, MINOR, VERSION};
use anyhow::{Context, Result, ensure};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends typed events to a run directory's log.
pub struct RunLog {
    path: PathBuf,
    file: File,
}

impl RunLog {
    /// Opens `dir/events.jsonl`. A fresh run (`resume_offset` = None) starts a new log with
    /// `header` (its version fields are set here); a resume cuts the log back to the offset.
    pub fn open(dir: &Path, resume_offset: Option<u64>, header: Header) -> Result<Self> {
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("cannot open run log {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let keep = resume_offset.unwrap_or(0);
        ensure!(
            keep <= len,
            "run log {} is shorter ({len} bytes) than the checkpoint expects ({keep}): it was modified or replaced; move the run dir away to start over",
            path.display()
        );
        file.set_len(keep)
            .with_context(|| format!("cannot truncate run log {}", path.display()))?;
        let mut log = Self { path, file };
        if resume_offset.is_none() {
            log.write(&Event::Header(Header {
                version: VERSION,
                minor: MINOR,
                ..header
            }))?;
        }
        Ok(log)
    }

    /// Appends one event as a single line.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot append to {}", self.path.display()))
    }

    /// The log's size in bytes after syncing it to disk (stored in checkpoints).
    pub fn offset(&mut self) -> Result<u64> {
        self.file
            .sync_data()
            .with_context(|| format!("cannot sync {}", self.path.display()))?;
        let meta = self.file.metadata();
        Ok(meta
            .with_context(|| format!("cannot read {}", self.path.display()))?
            .len())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
