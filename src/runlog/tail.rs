//! A tail reader for `events.jsonl`: follows a growing file, waits for a partial last line, skips
//! (and reports) corrupt lines, restarts when a resume rewrote the file, never panics on any bytes.

use super::{Event, VERSION};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
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
    /// Splits what is read into lines; its consumed bytes are the read position (an incomplete
    /// last line is re-read from there on every poll, so a line rewritten by a resume is never
    /// stitched to an old beginning).
    lines: LineSplitter,
    /// The last bytes before the read position, to notice a file rewritten under us.
    guard: Vec<u8>,
    refused: bool,
    /// Lines skipped so far (reports stop at [`MAX_REPORTED`]).
    skipped: u64,
}

impl Tail {
    /// A reader for the log at `path`, starting at its first line.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lines: LineSplitter::default(),
            guard: Vec::new(),
            refused: false,
            skipped: 0,
        }
    }

    /// The log this reader follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while an incomplete last line is waiting for the rest.
    pub fn has_partial_line(&self) -> bool {
        self.lines.has_partial()
    }

    /// Reads what was appended since the last poll. An I/O error (e.g. the file does not exist
    /// yet) is returned as is; the reader stays usable and a later poll tries again.
    pub fn poll(&mut self) -> std::io::Result<Vec<Item>> {
        let mut out = Vec::new();
        if self.refused {
            return Ok(out);
        }
        let mut file = File::open(&self.path)?;
        self.lines.drop_pending();
        if self.rewritten(&mut file)? {
            *self = Self::new(std::mem::take(&mut self.path));
            out.push(Item::Restarted);
        }
        file.seek(SeekFrom::Start(self.lines.consumed()))?;
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
        let offset = self.lines.consumed();
        if file.metadata()?.len() < offset {
            return Ok(true);
        }
        if self.guard.is_empty() {
            return Ok(false);
        }
        let mut now = vec![0u8; self.guard.len()];
        file.seek(SeekFrom::Start(offset - self.guard.len() as u64))?;
        file.read_exact(&mut now)?;
        Ok(now != self.guard)
    }

    /// Splits new bytes into lines and parses every complete one.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Item>) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(bytes, |line| self.take_line(line, out));
        if lines.is_discarding() {
            // the bytes of an over-long line are counted but not kept
            self.guard.clear();
        }
        self.lines = lines;
    }

    /// Handles one complete line; breaks after a refusal.
    fn take_line(&mut self, line: SplitLine<'_>, out: &mut Vec<Item>) -> ControlFlow<()> {
        match line.raw {
            Some(raw) => self.remember(raw),
            None => self.guard.clear(),
        }
        match line.parse() {
            Line::Blank => {}
            Line::Event(event) => out.push(Item::Event {
                line: line.number,
                event,
            }),
            Line::Skip(reason) => self.skip(line.number, reason, out),
            Line::Refuse { version } => {
                self.refused = true;
                let message = format!("{}: {}", self.path.display(), refusal(version));
                out.push(Item::Refused { message });
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Keeps the last bytes before the read position (the line and its newline).
    fn remember(&mut self, line: &[u8]) {
        self.guard.extend_from_slice(line);
        self.guard.push(b'\n');
        let cut = self.guard.len().saturating_sub(GUARD);
        self.guard.drain(..cut);
    }

    /// Reports a line as skipped, up to [`MAX_REPORTED`] reports (bounded memory).
    fn skip(&mut self, line: u64, reason: String, out: &mut Vec<Item>) {
        self.skipped += 1;
        if self.skipped < MAX_REPORTED {
            out.push(Item::Skipped { line, reason });
        } else if self.skipped == MAX_REPORTED {
            let reason = format!("{reason}; further damaged lines are skipped without a report");
            out.push(Item::Skipped { line, reason });
        }
    }
}

/// Splits a byte stream into numbered lines: an incomplete last line waits for its newline, and
/// a line longer than [`MAX_LINE`] is reported as too long without its bytes being kept.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// An incomplete last line, waiting for its newline.
    pending: Vec<u8>,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    /// Lines counted so far.
    line: u64,
    /// Bytes done with: complete lines (newlines included) and the dropped start of an
    /// over-long line.
    consumed: u64,
}

/// One complete line found by a [`LineSplitter`].
#[derive(Clone, Copy, Debug)]
pub struct SplitLine<'a> {
    /// The 1-based line number.
    pub number: u64,
    /// The line without its newline, or `None` when it is longer than [`MAX_LINE`].
    pub raw: Option<&'a [u8]>,
}

impl SplitLine<'_> {
    /// What the line holds; a too-long line is skipped.
    pub fn parse(&self) -> Line {
        match self.raw {
            Some(raw) => parse_line(raw),
            None => Line::Skip(format!("longer than {MAX_LINE} bytes")),
        }
    }
}

impl LineSplitter {
    /// Splits `bytes` (appended to what came before) and hands each complete line to `on_line`,
    /// in order, until it breaks; the bytes after a break are ignored.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_line: impl FnMut(SplitLine<'_>) -> ControlFlow<()>,
    ) {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            if self.complete(&bytes[..nl], &mut on_line).is_break() {
                return;
            }
            bytes = &bytes[nl + 1..];
        }
        self.keep_partial(bytes);
    }

    /// Ends the current line with `head` and reports it.
    fn complete(
        &mut self,
        head: &[u8],
        on_line: &mut impl FnMut(SplitLine<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let len = self.pending.len() + head.len();
        self.line += 1;
        self.consumed += len as u64 + 1;
        let number = self.line;
        if std::mem::take(&mut self.discarding) || len > MAX_LINE {
            self.pending.clear();
            return on_line(SplitLine { number, raw: None });
        }
        if self.pending.is_empty() {
            return on_line(SplitLine {
                number,
                raw: Some(head),
            });
        }
        let mut raw = std::mem::take(&mut self.pending);
        raw.extend_from_slice(head);
        on_line(SplitLine {
            number,
            raw: Some(&raw),
        })
    }

    /// Keeps an incomplete last line, or counts and drops it once it is too long.
    fn keep_partial(&mut self, bytes: &[u8]) {
        if self.discarding || self.pending.len() + bytes.len() > MAX_LINE {
            self.consumed += (self.pending.len() + bytes.len()) as u64;
            self.pending.clear();
            self.discarding = true;
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Forgets the incomplete last line (it is to be fed again); a dropped over-long line
    /// stays dropped.
    pub fn drop_pending(&mut self) {
        self.pending.clear();
    }

    /// Counts a line that arrived outside the byte stream (e.g. a whole event), so later lines
    /// keep their numbers; returns its number.
    pub fn count_line(&mut self) -> u64 {
        self.line += 1;
        self.line
    }

    /// True while an incomplete last line is waiting for the rest.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty() || self.discarding
    }

    /// True while the rest of an over-long line is being skipped.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Bytes done with: every complete line and the dropped start of an over-long line.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

/// What one complete line holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// Nothing to report: a blank line or an event type this build does not know.
    Blank,
    /// An event.
    Event(Event),
    /// Not a valid event: skipped, with the reason.
    Skip(String),
    /// A header of a major version newer than this build's: nothing more is to be read.
    Refuse { version: u32 },
}

/// Parses one line (without its newline; a trailing `\r` is ignored).
pub fn parse_line(raw: &[u8]) -> Line {
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t.trim_end_matches('\r'),
        Err(e) => return Line::Skip(format!("not UTF-8 ({e})")),
    };
    if text.trim().is_empty() {
        return Line::Blank;
    }
    if let Some(version) = newer_header(text) {
        return Line::Refuse { version };
    }
    match serde_json::from_str::<Event>(text) {
        Ok(Event::Unknown) => Line::Blank,
        Ok(event) => Line::Event(event),
        Err(e) => Line::Skip(format!("not a valid event: {e}")),
    }
}

/// The message for a log refused because of its major `version` (without the log's path).
pub fn refusal(version: u32) -> String {
    format!(
        "run log format version {version} is newer than this mimr understands ({VERSION}); update mimr to open it"
    )
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
