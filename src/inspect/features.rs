//! The inspection's features: every checkpoint's pooled output at every block and the encoder
//! output, for the readable images under `mimr embed`'s eval transform, one decode per chunk.

use super::{Cancelled, InspectProgress, Phase};
use crate::checkpoint::st;
use crate::data::{self, Dataset};
use crate::host::{HostTensor, TensorMap};
use crate::model::features::{self, ImageChunk, Tap, TapFeatures};
use crate::model::vit::{Pool, Vit, VitConfig};
use crate::runlog::Snapshot;
use anyhow::{Context, Result, ensure};
use burn::tensor::Device;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Images decoded and embedded at a time (the progress and cancellation granularity).
pub const CHUNK: usize = 64;

/// One checkpoint, loaded.
pub struct Model {
    pub path: PathBuf,
    pub config: VitConfig,
    pub vit: Vit,
}

impl Model {
    /// Loads checkpoint `path` (with `heads` attention heads when given) onto `device`; a
    /// missing file is an error naming it.
    pub fn load(path: &Path, heads: Option<usize>, device: &Device) -> Result<Self> {
        ensure!(
            path.is_file(),
            "checkpoint {} does not exist: give a .pth, .pt, .th or .safetensors file",
            path.display()
        );
        let ck = crate::checkpoint::load(path, heads)?;
        let vit = ck
            .build(device)
            .with_context(|| format!("cannot build the model of {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            config: ck.config,
            vit,
        })
    }

    /// Taps in snapshot order: `block.0` … `block.<depth-1>`, then `final`.
    fn taps(&self) -> Vec<Tap> {
        let blocks = (0..self.config.depth).map(Some);
        blocks.chain(std::iter::once(None)).collect()
    }

    /// Checks that `size`-pixel RGB images fit this model's patches.
    pub fn check_size(&self, size: u32) -> Result<()> {
        let (c, p) = (&self.config, self.config.patch_size);
        ensure!(
            c.in_chans == 3,
            "{}: the model takes {} input channels; inspection feeds RGB images (3)",
            self.path.display(),
            c.in_chans
        );
        ensure!(
            size > 0 && (size as usize).is_multiple_of(p),
            "{}: image size {size} is not a multiple of its patch size {p}: set the image size to a multiple of every checkpoint's patch size",
            self.path.display()
        );
        Ok(())
    }
}

/// Every model's features over the readable images, with each row's label and dataset index.
pub struct Embedded {
    /// Per model, per tap (snapshot order).
    pub feats: Vec<Vec<TapFeatures>>,
    /// −1 for an unlabelled sample.
    pub labels: Vec<f32>,
    pub index: Vec<f32>,
    pub skipped: usize,
}

/// What [`embed`] works with.
pub struct Job<'a> {
    pub ds: &'a dyn Dataset,
    pub models: &'a [Model],
    pub size: u32,
    pub pool: Pool,
    pub device: &'a Device,
}

/// Decodes the dataset chunk by chunk and runs every model on each chunk; reports progress
/// after each chunk and stops with [`Cancelled`] between chunks when `cancel` is set.
pub fn embed(
    job: &Job,
    progress: &dyn Fn(InspectProgress),
    cancel: &AtomicBool,
) -> Result<Embedded> {
    let n = job.ds.len();
    let taps: Vec<Vec<Tap>> = job.models.iter().map(Model::taps).collect();
    let mut out = Embedded {
        feats: taps.iter().map(|t| empty(t)).collect(),
        labels: Vec::new(),
        index: Vec::new(),
        skipped: 0,
    };
    for start in (0..n).step_by(CHUNK) {
        if cancel.load(Ordering::SeqCst) {
            return Err(Cancelled.into());
        }
        let end = (start + CHUNK).min(n);
        let (images, rows) = decode(job, start..end, &mut out);
        if rows > 0 {
            for ((m, t), acc) in job.models.iter().zip(&taps).zip(&mut out.feats) {
                let s = job.size as usize;
                let chunk = ImageChunk {
                    data: images.clone(),
                    shape: [rows, 3, s, s],
                };
                let got = features::extract(&m.vit, [Ok(chunk)], t, job.pool, job.device, |_| {})
                    .with_context(|| format!("cannot embed with {}", m.path.display()))?;
                append(acc, got);
            }
        }
        progress(InspectProgress {
            phase: Phase::Embedding,
            done: end,
            total: n,
        });
    }
    Ok(out)
}

fn empty(taps: &[Tap]) -> Vec<TapFeatures> {
    let one = |&tap| TapFeatures {
        tap,
        dim: 0,
        data: Vec::new(),
    };
    taps.iter().map(one).collect()
}

fn append(acc: &mut [TapFeatures], got: Vec<TapFeatures>) {
    for (a, g) in acc.iter_mut().zip(got) {
        a.dim = g.dim;
        a.data.extend(g.data);
    }
}

/// A sample's eval-transformed pixels and label.
type Decoded = (Vec<f32>, Option<u32>);

/// Decodes samples `range` in parallel under the eval transform; records the readable rows'
/// labels and indices in `out` (and the unreadable ones in `out.skipped`).
fn decode(job: &Job, range: std::ops::Range<usize>, out: &mut Embedded) -> (Vec<f32>, usize) {
    let crop = job.size;
    let resize = (f64::from(crop) / 0.875).round() as u32;
    let decoded: Vec<(usize, Option<Decoded>)> = range
        .into_par_iter()
        .map(|i| {
            let mut skipped = 0;
            let s = data::get_or_skip(job.ds, i, &mut skipped);
            (
                i,
                s.map(|s| (data::eval_view(&s.image, resize, crop), s.label)),
            )
        })
        .collect();
    let (mut images, mut rows) = (Vec::new(), 0);
    for (i, d) in decoded {
        let Some((pixels, label)) = d else {
            out.skipped += 1;
            continue;
        };
        images.extend(pixels);
        out.labels.push(label.map_or(-1.0, |l| l as f32));
        out.index.push(i as f32);
        rows += 1;
    }
    (images, rows)
}

/// Writes `snapshots/step-<step:09>.safetensors` under `dir`: `block.<i>` per block and `final`
/// `[rows, dim]`, `labels`, `index`; `meta` goes into the file's metadata. Returns the event.
pub fn write_snapshot(
    dir: &Path,
    step: u64,
    feats: &[TapFeatures],
    e: &Embedded,
    meta: HashMap<String, String>,
) -> Result<Snapshot> {
    let n = e.index.len();
    let mut map = TensorMap::new();
    for f in feats {
        let name = f.tap.map_or("final".to_string(), |b| format!("block.{b}"));
        map.insert(name, HostTensor::new(vec![n, f.dim], f.data.clone())?);
    }
    map.insert("labels".into(), HostTensor::new(vec![n], e.labels.clone())?);
    map.insert("index".into(), HostTensor::new(vec![n], e.index.clone())?);
    let file = format!("snapshots/step-{step:09}.safetensors");
    st::write(&dir.join(&file), &map, meta)?;
    Ok(Snapshot {
        step,
        file,
        samples: n,
        skipped: e.skipped,
    })
}
