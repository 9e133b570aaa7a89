//! `mimr inspect CKPT[,CKPT2] --images DIR`: per-block features of one or two checkpoints on an
//! image folder, written as a run-like directory (cached) whose path is printed.

use super::DeviceArgs;
use super::embed::PoolArg;
use crate::inspect::{self, InspectProgress, InspectSpec, Phase};
use crate::progress::Progress;
use anyhow::Result;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One checkpoint, or two separated by a comma (e.g. a MIM model and its refined version).
    #[arg(value_delimiter = ',', num_args = 1..=2, required = true)]
    pub checkpoints: Vec<PathBuf>,
    /// Attention heads per checkpoint when a file does not say, e.g. 2 or 2,4 (an empty entry:
    /// from the file, e.g. ,4).
    #[arg(long, value_name = "N[,M]")]
    pub heads: Option<String>,
    /// Image folder: class subfolders (labelled) or a flat folder of images.
    #[arg(long)]
    pub images: PathBuf,
    /// At most this many images, spread evenly over the folder.
    #[arg(long, default_value_t = inspect::DEFAULT_LIMIT)]
    pub limit: usize,
    /// Token pooling of every block: cls, mean (patch tokens) or cls-mean (concatenated).
    #[arg(long, value_enum, default_value = "cls")]
    pub pool: PoolArg,
    /// Centre-crop size (default: the first checkpoint's native image size).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Output directory (default: a cache folder under $XDG_CACHE_HOME or ~/.cache/mimr/inspect).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let spec = InspectSpec {
        heads: parse_heads(args.heads.as_deref())?,
        checkpoints: args.checkpoints,
        images: args.images,
        limit: args.limit,
        device: args.device.device,
        pool: args.pool.into(),
        image_size: args.image_size,
        out: args.out,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    on_ctrl_c(cancel.clone());
    let bar: RefCell<Option<Progress>> = RefCell::new(None);
    let report = |p: InspectProgress| show(&bar, p);
    let dir = inspect::run(&spec, &report, &cancel)?;
    if let Some(b) = bar.borrow_mut().take() {
        b.finish();
    }
    println!("{}", dir.display());
    Ok(())
}

/// `2`, `2,4` or `,4` → one entry per checkpoint (`None` = from the file).
fn parse_heads(spec: Option<&str>) -> Result<Vec<Option<usize>>> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    spec.split(',')
        .map(|s| match s.trim() {
            "" => Ok(None),
            n => n.parse().map(Some).map_err(|_| {
                anyhow::anyhow!("--heads {spec}: `{n}` is not a head count (e.g. --heads 2,4)")
            }),
        })
        .collect()
}

/// Draws the embedding phase as a progress bar (images); other phases as log lines.
fn show(bar: &RefCell<Option<Progress>>, p: InspectProgress) {
    let mut bar = bar.borrow_mut();
    let new = || Progress::new("inspect", "img", p.total as u64, 0);
    match p.phase {
        Phase::Thumbnails if p.done == 0 => {
            tracing::info!("writing thumbnails of {} images", p.total)
        }
        // the bar starts when embedding does, so its first rate is not of a moment
        Phase::Thumbnails => *bar = Some(new()),
        Phase::Embedding => bar.get_or_insert_with(new).set(p.done as u64, ""),
        Phase::Loading | Phase::Writing => {}
    }
}

/// Ctrl-C stops the inspection after the current chunk (nothing half-written is kept); a
/// second one exits at once.
fn on_ctrl_c(cancel: Arc<AtomicBool>) {
    let installed = ctrlc::set_handler(move || {
        if cancel.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        crate::progress::suspend(|| eprintln!("\nCtrl-C: stopping after the current chunk"));
    });
    if let Err(e) = installed {
        tracing::warn!("Ctrl-C handler not installed: {e}");
    }
}
