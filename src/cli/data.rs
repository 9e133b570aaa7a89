//! `mimr data stats <dataset>` prints the manifest; `mimr data preview <dataset> --out grid.png`
//! writes a PNG of one image's multi-crop views (method.md §4.1).

use crate::data::{self, Manifest, MultiCropConfig, Split};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Print the dataset manifest: samples per class, unlabelled and corrupt files.
    Stats(StatsArgs),
    /// Write a PNG grid of one image and its global and local views.
    Preview(PreviewArgs),
}

/// Dataset location and split, shared by the data commands.
#[derive(clap::Args, Debug, Clone)]
pub struct DatasetArgs {
    /// Image folder (class subfolders or flat), CIFAR binary batches, or IDX (MNIST) folder.
    pub dataset: PathBuf,
    /// train or test.
    #[arg(long, default_value = "train")]
    pub split: String,
}

impl DatasetArgs {
    pub fn open(&self) -> Result<Box<dyn data::Dataset>> {
        let split: Split = self.split.parse()?;
        data::open(&self.dataset, split)
    }
}

/// View sizes of the multi-crop recipe.
#[derive(clap::Args, Debug, Clone)]
pub struct ViewArgs {
    /// Global view size (method.md §4.1: 224).
    #[arg(long, default_value_t = 224)]
    pub global_size: usize,
    /// Local view size (96 for patch 16, 98 for patch 14).
    #[arg(long, default_value_t = 96)]
    pub local_size: usize,
    /// Number of local views.
    #[arg(long, default_value_t = 10)]
    pub n_local: usize,
    /// Patch size the view sizes must be divisible by.
    #[arg(long, default_value_t = 16)]
    pub patch: usize,
}

impl ViewArgs {
    pub fn config(&self) -> Result<MultiCropConfig> {
        let cfg = MultiCropConfig::for_image_size(self.global_size, self.local_size, self.n_local);
        cfg.validate(self.patch)?;
        Ok(cfg)
    }
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Decode every file to find corrupt ones (slower).
    #[arg(long)]
    pub check: bool,
}

#[derive(clap::Args, Debug)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub views: ViewArgs,
    /// Which sample to show.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    match args.what {
        What::Stats(a) => {
            let ds = a.data.open()?;
            print!("{}", Manifest::compute(ds.as_ref(), a.check)?);
        }
        What::Preview(a) => {
            let ds = a.data.open()?;
            let cfg = a.views.config()?;
            let (shown, skipped) = data::preview_grid(ds.as_ref(), a.index, &cfg, a.seed, &a.out)?;
            let note = if skipped > 0 {
                format!("; skipped {skipped} unreadable from sample {}", a.index)
            } else {
                String::new()
            };
            println!(
                "wrote {} (sample {shown} of {}{note})",
                a.out.display(),
                ds.describe()
            );
        }
    }
    Ok(())
}
