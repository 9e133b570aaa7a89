//! The run log: an append-only, versioned JSON-lines file (`events.jsonl`) that the viewer reads
//! live or replays; a resume truncates it to the byte offset stored in the checkpoint.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format version written in the header line; bump on incompatible changes.
pub const LOG_VERSION: u32 = 1;

/// Appends events, one JSON object per line, flushed per event.
pub struct RunLog {
    path: PathBuf,
    file: File,
}

impl RunLog {
    /// Opens `dir/events.jsonl`: a new log starts with a header; an existing one is cut back to
    /// `resume_offset` (the size it had when the resumed checkpoint was written).
    pub fn open(dir: &Path, resume_offset: Option<u64>, header: Value) -> Result<Self> {
        let path = dir.join("events.jsonl");
        let fresh = resume_offset.is_none() || !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("cannot open run log {}", path.display()))?;
        if let Some(off) = resume_offset {
            let len = file.metadata()?.len();
            anyhow::ensure!(
                off <= len,
                "run log {} is shorter ({len} bytes) than the checkpoint expects ({off}): it was modified",
                path.display()
            );
            file.set_len(off)?;
        } else {
            file.set_len(0)?;
        }
        let mut log = Self { path, file };
        if fresh {
            let mut h = header;
            h["type"] = json!("header");
            h["version"] = json!(LOG_VERSION);
            log.write(h)?;
        }
        Ok(log)
    }

    /// Appends one event.
    pub fn write(&mut self, event: Value) -> Result<()> {
        let mut line = serde_json::to_string(&event)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        self.file.flush()?;
        Ok(())
    }

    /// Current size in bytes (stored in checkpoints), after syncing to disk.
    pub fn offset(&mut self) -> Result<u64> {
        self.file.sync_data()?;
        Ok(self.file.metadata()?.len())
    }
}

/// Reads all events of a run log (for the viewer and tests).
pub fn read(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read run log {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))
        })
        .collect()
}
