//! Checkpoint inspection (`mimr inspect`, the app's "Inspect checkpoints"): per-block features of
//! one or two checkpoints on an image folder, written as a finished, cached run-like directory.

pub mod cache;
pub mod features;

use crate::device::DeviceChoice;
use crate::model::vit::Pool;
use crate::runlog::{self, Event, Header, RunKind, RunLog};
use anyhow::{Context, Result, ensure};
use features::{Embedded, Job, Model};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use cache::{cache_dir, cache_root};

/// Images inspected when the caller does not say (`--limit`).
pub const DEFAULT_LIMIT: usize = 2000;

/// What to inspect.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectSpec {
    /// One or two checkpoints (e.g. a MIM model and its refined version); snapshot i is the i-th.
    pub checkpoints: Vec<PathBuf>,
    /// Attention heads of checkpoint i when its file does not say and its width is not a
    /// standard ViT's (`--heads`); missing entries and `None` = from the file.
    pub heads: Vec<Option<usize>>,
    /// An image folder: class subfolders (labelled) or flat (unlabelled); also CIFAR / IDX
    /// folders (`data::open`), whose training split is used.
    pub images: PathBuf,
    /// At most this many images, spread evenly over the folder (every class represented).
    pub limit: usize,
    pub device: DeviceChoice,
    /// Token pooling of every block's output.
    pub pool: Pool,
    /// Centre-crop side; `None` = the first checkpoint's native image size.
    pub image_size: Option<u32>,
    /// The directory to write; `None` = [`cache_dir`].
    pub out: Option<PathBuf>,
}

impl InspectSpec {
    /// `checkpoints` on `images` with the defaults: 2000 images, auto device, CLS pooling, the
    /// first checkpoint's image size, the cache directory.
    pub fn new(checkpoints: Vec<PathBuf>, images: PathBuf) -> Self {
        Self {
            checkpoints,
            heads: Vec::new(),
            images,
            limit: DEFAULT_LIMIT,
            device: DeviceChoice::Auto,
            pool: Pool::Cls,
            image_size: None,
            out: None,
        }
    }

    /// The directory [`run`] writes: `out`, or the cache directory of these inputs.
    pub fn target(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| cache_dir(self))
    }

    /// Checks the spec's own values (the files are checked when read).
    fn validate(&self) -> Result<()> {
        let n = self.checkpoints.len();
        ensure!(
            (1..=2).contains(&n),
            "inspection takes one or two checkpoints, got {n}: pick a model and optionally its refined version"
        );
        ensure!(
            self.heads.len() <= n,
            "{} attention-head counts for {n} checkpoints: give at most one per checkpoint",
            self.heads.len()
        );
        ensure!(
            self.limit >= 1,
            "the image limit is 0: inspect at least 1 image (default {DEFAULT_LIMIT})"
        );
        for c in &self.checkpoints {
            ensure!(
                c.is_file(),
                "checkpoint {} does not exist: give a .pth, .pt, .th or .safetensors file",
                c.display()
            );
        }
        Ok(())
    }
}

/// Which part of the work a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading checkpoints (`done` of `total` loaded).
    Loading,
    /// Writing the thumbnail atlas (`total` = images; 0 or all done).
    Thumbnails,
    /// Decoding and embedding images (`done` of `total` images, after every chunk).
    Embedding,
    /// Writing snapshot files (`done` of `total` checkpoints).
    Writing,
}

/// A progress report: `done` of `total` units of `phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InspectProgress {
    pub phase: Phase,
    pub done: usize,
    pub total: usize,
}

/// The error [`run`] returns when `cancel` was set; nothing finished-looking is left behind.
/// Callers tell it from failures with `err.downcast_ref::<Cancelled>()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inspection cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Inspects `spec` and returns its directory: at once when it is already finished (cached),
/// else after writing it. `progress` is called on this thread; `cancel` is checked between chunks.
///
/// The directory holds what a refinement run's viewer reads: `thumbnails.png/json`,
/// `snapshots/step-<i:09>.safetensors` (checkpoint i: `block.<b>` per block, `final`, `labels`,
/// `index`) and `events.jsonl` (header of kind `inspect`, `thumbnails`, one `snapshot` per
/// checkpoint, `end`). It is written into a hidden staging folder and renamed into place, so a
/// directory at the target path is always complete.
pub fn run(
    spec: &InspectSpec,
    progress: &dyn Fn(InspectProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf> {
    spec.validate()?;
    let key = cache::key(spec);
    let target = spec.target();
    match cache::state(&target, &key) {
        cache::State::Finished => {
            tracing::info!("features cached in {}", target.display());
            return Ok(target);
        }
        cache::State::Foreign => anyhow::bail!(
            "{} exists and is not an inspection directory: choose another output folder or remove it",
            target.display()
        ),
        cache::State::Absent | cache::State::Stale => {}
    }
    let staging = cache::Staging::new(&target)?;
    write(spec, &key, staging.path(), progress, cancel)?;
    if cancel.load(Ordering::SeqCst) {
        return Err(Cancelled.into());
    }
    staging.publish(&target, &key)?;
    Ok(target)
}

/// Writes the whole inspection into `dir`.
fn write(
    spec: &InspectSpec,
    key: &str,
    dir: &Path,
    progress: &dyn Fn(InspectProgress),
    cancel: &AtomicBool,
) -> Result<()> {
    let selected = crate::device::select(spec.device)?;
    tracing::info!("device: {} ({})", selected.label, selected.reason);
    let models = load_models(spec, &selected.device, progress, cancel)?;
    let size = spec
        .image_size
        .unwrap_or((models[0].config.grid[0] * models[0].config.patch_size) as u32);
    for m in &models {
        m.check_size(size)?;
    }
    let ds = open_images(spec)?;
    let header = header(spec, key, &models, ds.as_ref(), size, &selected.label)?;
    let mut log = RunLog::open(dir, None, header)?;
    let report = |phase, done, total| progress(InspectProgress { phase, done, total });
    report(Phase::Thumbnails, 0, ds.len());
    let thumbs = crate::train::thumbnails::write(dir, ds.as_ref(), ds.len())?;
    log.write(&Event::Thumbnails(thumbs))?;
    report(Phase::Thumbnails, ds.len(), ds.len());
    let job = Job {
        ds: ds.as_ref(),
        models: &models,
        size,
        pool: spec.pool,
        device: &selected.device,
    };
    let embedded = features::embed(&job, progress, cancel)?;
    ensure!(
        !embedded.index.is_empty(),
        "none of the {} images in {} could be read",
        ds.len(),
        spec.images.display()
    );
    write_snapshots(spec, dir, &models, &embedded, size, &mut log, progress)?;
    log.write(&Event::End {
        step: models.len() as u64 - 1,
    })?;
    log.offset().map(drop)
}

/// Loads every checkpoint, reporting each; stops between them when cancelled.
fn load_models(
    spec: &InspectSpec,
    device: &burn::tensor::Device,
    progress: &dyn Fn(InspectProgress),
    cancel: &AtomicBool,
) -> Result<Vec<Model>> {
    let total = spec.checkpoints.len();
    let mut models = Vec::with_capacity(total);
    for (i, path) in spec.checkpoints.iter().enumerate() {
        if cancel.load(Ordering::SeqCst) {
            return Err(Cancelled.into());
        }
        progress(InspectProgress {
            phase: Phase::Loading,
            done: i,
            total,
        });
        let heads = spec.heads.get(i).copied().flatten();
        models.push(Model::load(path, heads, device)?);
    }
    progress(InspectProgress {
        phase: Phase::Loading,
        done: total,
        total,
    });
    Ok(models)
}

/// The images (training split), cut to `limit` samples spread evenly over the folder.
fn open_images(spec: &InspectSpec) -> Result<Arc<dyn crate::data::Dataset>> {
    let ds: Arc<dyn crate::data::Dataset> =
        crate::data::open(&spec.images, crate::data::Split::Train)
            .with_context(|| format!("cannot read the images in {}", spec.images.display()))?
            .into();
    if ds.len() <= spec.limit {
        return Ok(ds);
    }
    Ok(Arc::new(crate::data::subset::Subset::new(ds, spec.limit)))
}

/// The log header: the spec, its key, the checkpoints (file name, path, architecture), the
/// image size; `encoder` = the first checkpoint's architecture, no heads.
fn header(
    spec: &InspectSpec,
    key: &str,
    models: &[Model],
    ds: &dyn crate::data::Dataset,
    size: u32,
    device: &str,
) -> Result<Header> {
    let checkpoints: Vec<serde_json::Value> = models
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.path.file_name().map(|n| n.to_string_lossy()),
                "path": m.path,
                "encoder": m.config,
            })
        })
        .collect();
    let config = serde_json::json!({
        "key": key,
        "spec": spec,
        "image_size": size,
        "checkpoints": checkpoints,
    });
    Ok(Header {
        version: runlog::VERSION,
        minor: runlog::MINOR,
        kind: RunKind::Inspect,
        config,
        heads: Vec::new(),
        dataset: ds.describe(),
        device: device.to_string(),
        encoder: serde_json::to_value(&models[0].config)?,
    })
}

/// One snapshot per checkpoint (step i = checkpoint i) and its log event.
fn write_snapshots(
    spec: &InspectSpec,
    dir: &Path,
    models: &[Model],
    e: &Embedded,
    size: u32,
    log: &mut RunLog,
    progress: &dyn Fn(InspectProgress),
) -> Result<()> {
    let total = models.len();
    for (i, (m, feats)) in models.iter().zip(&e.feats).enumerate() {
        let meta = HashMap::from([
            ("checkpoint".to_string(), m.path.display().to_string()),
            (
                "pool".to_string(),
                format!("{:?}", spec.pool).to_lowercase(),
            ),
            ("image_size".to_string(), size.to_string()),
            ("final_norm".to_string(), "true".to_string()),
        ]);
        let ev = features::write_snapshot(dir, i as u64, feats, e, meta)?;
        log.write(&Event::Snapshot(ev))?;
        progress(InspectProgress {
            phase: Phase::Writing,
            done: i + 1,
            total,
        });
    }
    Ok(())
}
