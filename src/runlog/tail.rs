//! A tail reader for `events.jsonl`: follows a growing file, waits for a partial last line, skips
//! (and reports) corrupt lines, restarts when a resume rewrote the file, never panics on any bytes.

use super::{Event, VERSION};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A line longer than this is skipped as corrupt (no event comes near it), bounding memory.
pub const MAX_LINE: usize = 16 << 20;
/// Skipped lines reported one by one; after that a single notice says that more follow.
pub const MAX_REPORTED: u64 = 1000;
/// Bytes read per `read` call.
const CHUNK: usize = 1 << 20;
/// How many bytes before the read position are remembered to notice a rewritten file (a whole
/// step line, whose timing differs when a resume writes the same step again).
const GUARD: usize = 4096;

/// What one poll found, in file order.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// An event and its 1-based line number.
    Event { line: u64, event: Event },
    /// A line that is not a valid event: skipped.
    Skipped { line: u64, reason: String },
    /// The file shrank or was rewritten (a resumed run cuts its log back): everything read
    /// before is void, and reading starts again from the top.
    Restarted,
    /// The log's major version is newer than this build understands: nothing more is read.
    Refused { message: String },
}

/// Follows one run log. Call [`Tail::poll`] whenever the file may have grown.
pub struct Tail {
    path: PathBuf,
    /// Bytes consumed (complete lines only).
    offset: u64,
    /// Complete lines consumed.
    line: u64,
    /// An incomplete last line, waiting for its newline (re-read from `offset` on every poll,
    /// so a line rewritten by a resume is never stitched to an old beginning).
    pending: Vec<u8>,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    /// The last bytes before `offset`, to notice a file rewritten under us.
    guard: Vec<u8>,
    refused: bool,
    /// Lines skipped so far (reports stop at [`MAX_REPORTED`]).
    skipped: u64,
}

impl Tail {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            offset: 0,
            line: 0,
            pending: Vec::new(),
            discarding: false,
            guard: Vec::new(),
            refused: false,
            skipped: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while an incomplete last line is waiting for the rest.
    pub fn has_partial_line(&self) -> bool {
        !self.pending.is_empty() || self.discarding
    }

    /// Reads what was appended since the last poll. An I/O error (e.g. the file does not exist
    /// yet) is returned as is; the reader stays usable and a later poll tries again.
    pub fn poll(&mut self) -> std::io::Result<Vec<Item>> {
        let mut out = Vec::new();
        if self.refused {
            return Ok(out);
        }
        let mut file = File::open(&self.path)?;
        self.pending.clear();
        if self.rewritten(&mut file)? {
            *self = Self::new(std::mem::take(&mut self.path));
            out.push(Item::Restarted);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.feed(&buf[..n], &mut out);
            if self.refused {
                break;
            }
        }
        Ok(out)
    }

    /// The file is shorter than what was read, or its bytes before the read position changed.
    fn rewritten(&self, file: &mut File) -> std::io::Result<bool> {
        let len = file.metadata()?.len();
        if len < self.offset {
            return Ok(true);
        }
        if self.guard.is_empty() {
            return Ok(false);
        }
        let mut now = vec![0u8; self.guard.len()];
        file.seek(SeekFrom::Start(self.offset - self.guard.len() as u64))?;
        file.read_exact(&mut now)?;
        Ok(now != self.guard)
    }

    /// Splits new bytes into lines and parses every complete one.
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Item>) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&bytes[..nl], &bytes[nl + 1..]);
            let was_discarding = std::mem::take(&mut self.discarding);
            let over = self.pending.len() + head.len() > MAX_LINE;
            self.line += 1;
            let line_len = (self.pending.len() + head.len() + 1) as u64;
            if was_discarding || over {
                self.skip(format!("longer than {MAX_LINE} bytes"), out);
                self.pending.clear();
                self.guard.clear();
            } else {
                self.pending.extend_from_slice(head);
                let line = std::mem::take(&mut self.pending);
                self.parse(&line, out);
                self.remember(&line);
            }
            self.offset += line_len;
            if self.refused {
                return;
            }
            bytes = rest;
        }
        if self.discarding || self.pending.len() + bytes.len() > MAX_LINE {
            // the line is already too long: count its bytes but do not keep them
            self.offset += (self.pending.len() + bytes.len()) as u64;
            self.pending.clear();
            self.discarding = true;
            self.guard.clear();
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Keeps the last bytes before the read position (the line and its newline).
    fn remember(&mut self, line: &[u8]) {
        self.guard.extend_from_slice(line);
        self.guard.push(b'\n');
        let cut = self.guard.len().saturating_sub(GUARD);
        self.guard.drain(..cut);
    }

    fn parse(&mut self, raw: &[u8], out: &mut Vec<Item>) {
        let line = self.line;
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t.trim_end_matches('\r'),
            Err(e) => return self.skip(format!("not UTF-8 ({e})"), out),
        };
        if text.trim().is_empty() {
            return;
        }
        if let Some(v) = newer_header(text) {
            self.refused = true;
            out.push(Item::Refused {
                message: format!(
                    "{}: run log format version {v} is newer than this mimr understands ({VERSION}); update mimr to open it",
                    self.path.display()
                ),
            });
            return;
        }
        match serde_json::from_str::<Event>(text) {
            Ok(Event::Unknown) => {}
            Ok(event) => out.push(Item::Event { line, event }),
            Err(e) => self.skip(format!("not a valid event: {e}"), out),
        }
    }

    /// Reports the current line as skipped, up to [`MAX_REPORTED`] reports (bounded memory).
    fn skip(&mut self, reason: String, out: &mut Vec<Item>) {
        self.skipped += 1;
        let line = self.line;
        if self.skipped < MAX_REPORTED {
            out.push(Item::Skipped { line, reason });
        } else if self.skipped == MAX_REPORTED {
            let reason = format!("{reason}; further damaged lines are skipped without a report");
            out.push(Item::Skipped { line, reason });
        }
    }
}

/// The major version of a header line, when it is newer than this build's: checked on the
/// `type` and `version` fields alone, since a newer header need not parse as today's.
fn newer_header(text: &str) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: String,
        version: Option<u32>,
    }
    if !text.contains("\"header\"") {
        return None;
    }
    let p: Probe = serde_json::from_str(text).ok()?;
    p.version.filter(|&v| p.kind == "header" && v > VERSION)
}

/// A whole log read at once: its events and a notice per skipped line.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub events: Vec<Event>,
    pub notices: Vec<String>,
}

/// Reads a finished (or growing) log once; problems become notices, never errors, except a log
/// that cannot be opened or a major version newer than this build's.
pub fn read_all(path: &Path) -> anyhow::Result<Replay> {
    let mut tail = Tail::new(path);
    let items = tail
        .poll()
        .map_err(|e| anyhow::anyhow!("cannot read run log {}: {e}", path.display()))?;
    let mut r = Replay::default();
    for item in items {
        match item {
            Item::Event { event, .. } => r.events.push(event),
            Item::Skipped { line, reason } => r.notices.push(format!("line {line}: {reason}")),
            Item::Restarted => r.events.clear(),
            Item::Refused { message } => anyhow::bail!(message),
        }
    }
    if tail.has_partial_line() {
        r.notices
            .push("the last line is incomplete (still being written?)".into());
    }
    Ok(r)
}
