//! The runs the app has open: each one's feed of run-log items (a polling thread for a run
//! directory, or a source polled in place) and the model its panels draw.

use crate::view::{LiveRun, RunModel, RunSource, SourceItem};
use std::path::{Path, PathBuf};

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
    feed: Feed,
}

impl OpenRun {
    /// Follows the run directory `dir`; `repaint` is called when new items arrive.
    pub fn open_dir(dir: &Path, repaint: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let live = LiveRun::open_dir(dir, repaint)?;
        Ok(Self::new(
            run_name(dir),
            Some(dir.to_path_buf()),
            Feed::Live(live),
        ))
    }

    /// A run read from `source` on the UI thread.
    pub fn from_source(source: Box<dyn RunSource>) -> Self {
        Self::new(source.name(), None, Feed::Direct(source))
    }

    fn new(name: String, dir: Option<PathBuf>, feed: Feed) -> Self {
        Self {
            name,
            dir,
            shown: true,
            model: RunModel::default(),
            feed,
        }
    }

    /// Applies what arrived; true when anything did.
    pub fn update(&mut self) -> bool {
        let items = self.feed.drain();
        let any = !items.is_empty();
        self.model.extend(items);
        any
    }
}

/// A short name for a run directory: its last path component.
pub fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}
