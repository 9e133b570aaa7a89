//! The run model the app draws, without UI and without burn (so it can compile to wasm): sources
//! that poll a run's log, the accumulated [`RunModel`], curve helpers and a threaded follower.
//!
//! Data flow: `RunSource::poll` (a run directory over `runlog::Tail`, or bytes in memory) →
//! `SourceItem`s (events, notices, restarts) → `LiveRun`'s channel → `RunModel::apply` → panels.

pub mod atlas;
pub mod embedding;
pub mod evals;
pub mod files;
pub mod live;
pub mod model;
pub mod project;
pub mod series;
pub mod snapshot;
pub mod source;

pub use evals::{EvalTable, HeatMap, MetricKey, Protocol, Tap};
pub use live::{LiveRun, POLL_PERIOD};
pub use model::{
    HeadMetric, LatestStep, Limits, Progress, RunInfo, RunMetric, RunModel, RunState, StepTable,
};
pub use series::{Ema, Timeline, XAxis, points, smooth, y_range, y_range_log};
pub use source::{DirSource, FileKind, MemorySource, Notice, RunSource, SourceItem};
