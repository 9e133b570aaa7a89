//! [`LiveRun`]: a background thread polls a [`RunSource`] and sends what is new over a channel,
//! asking the UI to repaint; the UI drains the channel into its `RunModel` without blocking.

use super::model::RunModel;
use super::source::{DirSource, RunSource, SourceItem};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a run is polled: an event written by the trainer is on screen well within 1 s.
pub const POLL_PERIOD: Duration = Duration::from_millis(200);

/// A run followed on a background thread; the thread stops when this is dropped.
pub struct LiveRun {
    name: String,
    rx: Receiver<Vec<SourceItem>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveRun {
    /// Follows the run directory `dir` (live and finished runs alike).
    pub fn open_dir(
        dir: impl Into<PathBuf>,
        repaint: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        Self::spawn(DirSource::new(dir), POLL_PERIOD, repaint)
    }

    /// Polls `source` every `period` on a new thread; after each non-empty batch is sent,
    /// `repaint` is called (e.g. egui's `request_repaint`). Fails only when the OS refuses a
    /// new thread.
    pub fn spawn<S>(
        mut source: S,
        period: Duration,
        repaint: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self>
    where
        S: RunSource + Send + 'static,
    {
        let name = source.name();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mimr-view {name}"))
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    let items = source.poll();
                    if !items.is_empty() {
                        if tx.send(items).is_err() {
                            return;
                        }
                        repaint();
                    }
                    if source.finished() {
                        return;
                    }
                    std::thread::park_timeout(period);
                }
            })?;
        Ok(Self {
            name,
            rx,
            stop,
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything received so far, without blocking.
    pub fn drain(&self) -> Vec<SourceItem> {
        let mut out = Vec::new();
        while let Ok(batch) = self.rx.try_recv() {
            out.extend(batch);
        }
        out
    }

    /// Applies everything received so far to `model`, without blocking; returns the number of
    /// items applied.
    pub fn drain_into(&self, model: &mut RunModel) -> usize {
        let items = self.drain();
        let n = items.len();
        model.extend(items);
        n
    }

    /// False once the polling thread has ended (a refused log); what it sent can still be
    /// drained.
    pub fn is_polling(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
