//! Where a viewed run's log comes from: the [`RunSource`] trait (poll for what is new), a run
//! directory on disk over `runlog::Tail`, and an in-memory source fed with bytes or items.

use crate::runlog::tail::{self, Line, LineSplitter, SplitLine};
use crate::runlog::{self, Event, Item, Tail};
use std::collections::VecDeque;
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};

/// One thing a source yields, in log order.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceItem {
    /// An event and its 1-based line number.
    Event { line: u64, event: Event },
    /// Something skipped or missing; the run goes on being read (except after `Refused`).
    Notice(Notice),
    /// The log was rewritten (a resumed run cut it back): everything read so far is void.
    Restarted,
}

/// Which file a [`Notice::MissingFile`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Log,
    Snapshot,
    ThumbnailAtlas,
    ThumbnailIndex,
}

impl FileKind {
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Log => "run log",
            FileKind::Snapshot => "snapshot",
            FileKind::ThumbnailAtlas => "thumbnail atlas",
            FileKind::ThumbnailIndex => "thumbnail index",
        }
    }
}

/// Anything the viewer skipped or could not find; shown to the user, never a crash.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// A line that is not a valid event.
    SkippedLine { line: u64, reason: String },
    /// The log's major version is newer than this build's: nothing more is read.
    Refused { message: String },
    /// A file the log refers to (or the log itself) cannot be read.
    MissingFile {
        kind: FileKind,
        path: String,
        reason: String,
    },
    /// The log was rewritten by a resume and was read again from the top.
    Rewritten,
    /// One head's online evaluation failed at a step (the run went on).
    EvalFailed {
        step: u64,
        head: String,
        error: String,
    },
}

impl Notice {
    /// True for a notice after which no more data arrives.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Notice::Refused { .. })
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::SkippedLine { line, reason } => write!(f, "line {line} skipped: {reason}"),
            Notice::Refused { message } => f.write_str(message),
            Notice::MissingFile { kind, path, reason } => {
                write!(f, "{} {path}: {reason}", kind.describe())
            }
            Notice::Rewritten => f.write_str("the run log was rewritten (resumed run): reloaded"),
            Notice::EvalFailed { step, head, error } => {
                write!(
                    f,
                    "online evaluation of head {head} at step {step} failed: {error}"
                )
            }
        }
    }
}

/// A run the viewer follows. Live and finished runs are the same: poll until nothing new comes;
/// a finished run simply stops growing.
pub trait RunSource {
    /// A short name for the run (the run directory's name).
    fn name(&self) -> String;
    /// What arrived since the last poll, in log order (empty when nothing is new). Never blocks
    /// for long and never fails: problems come back as notices.
    fn poll(&mut self) -> Vec<SourceItem>;
    /// True once nothing more can ever arrive (a refused log).
    fn finished(&self) -> bool;
}

/// A run directory on disk, read with [`runlog::Tail`].
pub struct DirSource {
    dir: PathBuf,
    tail: Tail,
    /// The last error reported for the log, so a missing file is noticed once, not every poll.
    last_error: Option<String>,
    refused: bool,
    /// The log has been opened once (from then on, a missing log is a notice).
    seen_log: bool,
}

impl DirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let tail = Tail::new(dir.join(runlog::FILE));
        Self {
            dir,
            tail,
            last_error: None,
            refused: false,
            seen_log: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A notice for each file of `event` that is not there.
    fn check_files(&self, event: &Event, out: &mut Vec<SourceItem>) {
        let files: Vec<(FileKind, &str)> = match event {
            Event::Snapshot(s) => vec![(FileKind::Snapshot, s.file.as_str())],
            Event::Thumbnails(t) => vec![
                (FileKind::ThumbnailAtlas, t.image.as_str()),
                (FileKind::ThumbnailIndex, t.index.as_str()),
            ],
            _ => return,
        };
        for (kind, rel) in files {
            let reason = match run_file(&self.dir, rel) {
                None => "not a path inside the run directory",
                Some(p) if p.is_file() => continue,
                Some(_) => "not found",
            };
            out.push(SourceItem::Notice(Notice::MissingFile {
                kind,
                path: rel.to_string(),
                reason: reason.into(),
            }));
        }
    }
}

impl RunSource for DirSource {
    fn name(&self) -> String {
        self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into(),
        )
    }

    fn poll(&mut self) -> Vec<SourceItem> {
        if self.refused {
            return Vec::new();
        }
        let items = match self.tail.poll() {
            Ok(items) => items,
            // a run that is starting has no log yet: that is waiting, not a problem
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.seen_log => {
                return Vec::new();
            }
            Err(e) => return self.log_error(e.to_string()),
        };
        self.seen_log = true;
        self.last_error = None;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Item::Event { line, event } => {
                    let mut missing = Vec::new();
                    self.check_files(&event, &mut missing);
                    out.push(SourceItem::Event { line, event });
                    out.extend(missing);
                }
                Item::Skipped { line, reason } => {
                    out.push(SourceItem::Notice(Notice::SkippedLine { line, reason }))
                }
                Item::Restarted => out.push(SourceItem::Restarted),
                Item::Refused { message } => {
                    self.refused = true;
                    out.push(SourceItem::Notice(Notice::Refused { message }));
                }
            }
        }
        out
    }

    fn finished(&self) -> bool {
        self.refused
    }
}

impl DirSource {
    /// A notice when the log cannot be read, once per distinct error.
    fn log_error(&mut self, reason: String) -> Vec<SourceItem> {
        if self.last_error.as_deref() == Some(reason.as_str()) {
            return Vec::new();
        }
        self.last_error = Some(reason.clone());
        vec![SourceItem::Notice(Notice::MissingFile {
            kind: FileKind::Log,
            path: self.tail.path().display().to_string(),
            reason,
        })]
    }
}

/// `rel` (a path from the log) inside `dir`, or None when it is absolute or leaves the folder.
pub fn run_file(dir: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let inside = p.components().all(|c| matches!(c, Component::Normal(_)))
        && p.components().next().is_some();
    inside.then(|| dir.join(p))
}

/// A source fed from memory: whole items (tests) or the log's bytes as they arrive (a web
/// build fetching `events.jsonl`). Lines are parsed as [`runlog::Tail`] does.
#[derive(Debug, Default)]
pub struct MemorySource {
    name: String,
    queue: VecDeque<SourceItem>,
    /// Splits pushed bytes into lines and numbers every line, pushed events included.
    lines: LineSplitter,
    refused: bool,
}

impl MemorySource {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Queues an item as is.
    pub fn push(&mut self, item: SourceItem) {
        if !self.refused {
            self.refused = matches!(&item, SourceItem::Notice(n) if n.is_fatal());
            self.queue.push_back(item);
        }
    }

    /// Queues an event as the next line.
    pub fn push_event(&mut self, event: Event) {
        let line = self.lines.count_line();
        self.push(SourceItem::Event { line, event });
    }

    /// Appends bytes of the log; complete lines become items, a partial last line waits.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if self.refused {
            return;
        }
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(bytes, |line| self.take_line(line));
        self.lines = lines;
    }

    /// The log was replaced (e.g. fetched anew): the next bytes start at line 1.
    pub fn restart(&mut self) {
        self.lines = LineSplitter::default();
        self.refused = false;
        self.queue.push_back(SourceItem::Restarted);
    }

    /// Queues what one complete line holds; breaks once the log is refused.
    fn take_line(&mut self, split: SplitLine<'_>) -> ControlFlow<()> {
        let line = split.number;
        match split.parse() {
            Line::Blank => {}
            Line::Event(event) => self.push(SourceItem::Event { line, event }),
            Line::Refuse { version } => {
                let message = tail::refusal(version);
                self.push(SourceItem::Notice(Notice::Refused { message }));
            }
            Line::Skip(reason) => {
                self.push(SourceItem::Notice(Notice::SkippedLine { line, reason }))
            }
        }
        if self.refused {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl RunSource for MemorySource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn poll(&mut self) -> Vec<SourceItem> {
        self.queue.drain(..).collect()
    }

    fn finished(&self) -> bool {
        self.refused && self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bytes_split_into_lines_skip_damage_and_refuse_newer_versions() {
        let mut m = MemorySource::new("mem");
        m.push_bytes(b"{\"type\":\"end\",\"st");
        assert!(m.poll().is_empty(), "a partial line waits");
        m.push_bytes(b"ep\":4}\n\xff\n{\"type\":\"future\"}\n\n{\"type\":\"end\",\"step\":5}\n");
        let items = m.poll();
        assert_eq!(
            items[0],
            SourceItem::Event {
                line: 1,
                event: Event::End { step: 4 }
            }
        );
        assert!(matches!(
            &items[1],
            SourceItem::Notice(Notice::SkippedLine { line: 2, .. })
        ));
        assert_eq!(
            items[2],
            SourceItem::Event {
                line: 5,
                event: Event::End { step: 5 }
            }
        );
        assert_eq!(items.len(), 3);
        m.push_bytes(b"{\"type\":\"header\",\"version\":9}\n{\"type\":\"end\",\"step\":6}\n");
        let items = m.poll();
        assert!(
            matches!(items.as_slice(), [SourceItem::Notice(Notice::Refused { message })] if message.contains("version 9")),
            "{items:?}"
        );
        assert!(m.finished());
        m.restart();
        assert!(!m.finished());
        assert_eq!(m.poll(), vec![SourceItem::Restarted]);
    }

    #[test]
    fn a_log_not_yet_written_is_waiting_but_a_vanished_one_is_a_notice() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = DirSource::new(dir.path());
        assert!(
            src.poll().is_empty(),
            "a starting run: no log yet, no notice"
        );
        let header = r#"{"type":"header","version":1,"minor":2,"kind":"refine"}"#;
        std::fs::write(dir.path().join(runlog::FILE), format!("{header}\n")).unwrap();
        let items = src.poll();
        assert!(matches!(
            items.as_slice(),
            [SourceItem::Event { line: 1, .. }]
        ));
        std::fs::remove_file(dir.path().join(runlog::FILE)).unwrap();
        let items = src.poll();
        assert!(
            matches!(
                items.as_slice(),
                [SourceItem::Notice(Notice::MissingFile {
                    kind: FileKind::Log,
                    ..
                })]
            ),
            "{items:?}"
        );
    }

    #[test]
    fn run_files_stay_inside_the_run_directory() {
        let d = Path::new("/runs/a");
        assert_eq!(
            run_file(d, "snapshots/step-1.safetensors"),
            Some(d.join("snapshots/step-1.safetensors"))
        );
        assert_eq!(run_file(d, "../b/x"), None);
        assert_eq!(run_file(d, "/etc/passwd"), None);
        assert_eq!(run_file(d, ""), None);
    }
}
