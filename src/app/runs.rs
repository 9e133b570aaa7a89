//! The runs the app has open: each one's feed of run-log items (a polling thread for a run
//! directory, or a source polled in place) and the model its panels draw.

use super::map::MapState;
use crate::view::files::{DirFiles, RunFiles};
use crate::view::{LiveRun, RunModel, RunSource, SourceItem};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Items applied per frame at most: a long finished log opens over a few frames instead of
/// freezing one.
pub const ITEMS_PER_FRAME: usize = 20_000;

/// Where a run's items come from.
pub enum Feed {
    /// A run directory followed on a background thread (live and finished runs alike).
    Live(LiveRun),
    /// A source polled on the UI thread each frame (in-memory sources: tests, the web build).
    Direct(Box<dyn RunSource>),
}

impl Feed {
    /// What arrived since the last call; never blocks.
    fn drain(&mut self) -> Vec<SourceItem> {
        match self {
            Feed::Live(live) => live.drain(),
            Feed::Direct(source) => source.poll(),
        }
    }
}

/// One open run.
pub struct OpenRun {
    pub name: String,
    /// The run directory, for runs read from disk (kept between launches).
    pub dir: Option<PathBuf>,
    /// Drawn in the curves (several runs can be overlaid).
    pub shown: bool,
    pub model: RunModel,
    /// The files the log points at (snapshots, thumbnails), when they can be read.
    pub files: Option<Arc<dyn RunFiles>>,
    /// The embedding map and inspector of this run.
    pub map: MapState,
    feed: Feed,
    /// Items received but not yet applied (beyond a frame's share).
    pending: VecDeque<SourceItem>,
}

impl OpenRun {
    /// Follows the run directory `dir`; `repaint` is called when new items arrive.
    pub fn open_dir(dir: &Path, repaint: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let live = LiveRun::open_dir(dir, repaint)?;
        let mut run = Self::new(run_name(dir), Some(dir.to_path_buf()), Feed::Live(live));
        run.files = Some(Arc::new(DirFiles::new(dir)));
        Ok(run)
    }

    /// A run read from `source` on the UI thread; `files` serves the files its log names.
    pub fn from_source(source: Box<dyn RunSource>, files: Option<Arc<dyn RunFiles>>) -> Self {
        let mut run = Self::new(source.name(), None, Feed::Direct(source));
        run.files = files;
        run
    }

    fn new(name: String, dir: Option<PathBuf>, feed: Feed) -> Self {
        Self {
            name,
            dir,
            shown: true,
            model: RunModel::default(),
            files: None,
            map: MapState::default(),
            feed,
            pending: VecDeque::new(),
        }
    }

    /// Applies what arrived, at most [`ITEMS_PER_FRAME`] items; true when items remain for the
    /// next frame (the caller asks for one).
    pub fn update(&mut self) -> bool {
        self.pending.extend(self.feed.drain());
        let n = self.pending.len().min(ITEMS_PER_FRAME);
        self.model.extend(self.pending.drain(..n));
        !self.pending.is_empty()
    }
}

/// A short name for a run directory: its last path component.
pub fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::MemorySource;

    #[test]
    fn a_long_log_is_applied_over_several_frames_in_order() {
        let mut source = MemorySource::new("long");
        let n = ITEMS_PER_FRAME as u64 * 2 + 5;
        let mut bytes = Vec::new();
        for s in 1..=n {
            let line = format!(
                r#"{{"type":"pretrain_step","step":{s},"epoch":0,"lr":0.1,"img_per_s":5.0,"loss":1.0}}"#
            );
            bytes.extend(line.as_bytes());
            bytes.push(b'\n');
        }
        source.push_bytes(&bytes);
        let mut run = OpenRun::from_source(Box::new(source), None);
        assert!(run.update(), "more than a frame's share: items remain");
        assert_eq!(run.model.steps().len(), ITEMS_PER_FRAME);
        assert!(run.update());
        assert!(!run.update(), "all applied after three frames");
        let steps = run.model.steps().timeline().steps().to_vec();
        assert_eq!(steps, (1..=n).collect::<Vec<_>>());
    }
}
