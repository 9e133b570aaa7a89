//! The run log (`events.jsonl`): a typed, versioned event schema, an append-only writer and a tail
//! reader that follows a growing file. Uses serde only (no burn), so viewers and wasm builds can too.
//!
//! Compatibility rule: the header carries `version` (major) and `minor`. Adding an event type or a
//! field bumps `minor`; readers skip event types and fields they do not know. Removing, renaming or
//! changing the meaning of anything bumps `version`; a reader refuses a log whose major version is
//! newer than [`VERSION`] with a message saying so.

pub mod event;
pub mod tail;
pub mod writer;

pub use event::{
    Encoder, EvalEvent, EvalHead, EvalSamples, Event, HeadStep, Header, NnExamples, NnPair,
    PretrainStep, Reconstructions, RunKind, Snapshot, StepEvent, ThumbnailEntry, ThumbnailIndex,
    Thumbnails,
};
pub use tail::{Item, Replay, Tail, read_all};
pub use writer::RunLog;

/// Major format version written and understood by this build.
pub const VERSION: u32 = 1;
/// Minor format version written by this build (1: `thumbnails`, `pretrain_step`, header `kind`,
/// `eval.encoder`; 2: `snapshot.skipped` and the snapshot file's `index` rows, `step.time`;
/// 3: header `kind` = `inspect` and the snapshot file's `block.<i>` / `final` tensors,
/// `nn_examples.thumbnails`; 4: `reconstructions`, pre-training `eval` events).
pub const MINOR: u32 = 4;
/// Seconds since the Unix epoch now (`None` on a clock set before 1970).
pub fn unix_time() -> Option<f64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.ok().map(|d| d.as_secs_f64())
}

/// The run log's file name inside a run directory.
pub const FILE: &str = "events.jsonl";
