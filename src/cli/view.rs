//! `mimr view RUN_DIR…` and `mimr app`: open the desktop app on run directories (live while they
//! grow, replayed when finished), or on the runs of the last session.

use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run directories written by `mimr refine` (live or finished).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The tab to show first.
    #[arg(long, value_enum)]
    pub tab: Option<crate::app::Tab>,
    /// Save a PNG of the window once the runs are read, then close (docs, checks).
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Open the map's nearest-neighbour inspector on this sample (dataset index) of the first run.
    #[arg(long)]
    pub select: Option<usize>,
}

/// `mimr view`: every path must be a folder (the run log may not exist yet: a run starting).
pub fn run(args: Args) -> Result<()> {
    for dir in &args.runs {
        if !dir.is_dir() {
            bail!(
                "{} is not a run directory: give the folder `mimr refine` writes (run.dir in its config)",
                dir.display()
            );
        }
    }
    crate::app::run_native(crate::app::Launch {
        dirs: args.runs,
        tab: args.tab,
        screenshot: args.screenshot,
        select: args.select,
        ..Default::default()
    })
}

#[derive(clap::Args, Debug)]
pub struct AppArgs {
    /// Inspect one checkpoint, or two separated by a comma, at launch (needs --images).
    #[arg(long, value_delimiter = ',', num_args = 1..=2, requires = "images")]
    pub inspect: Vec<PathBuf>,
    /// The image folder of --inspect.
    #[arg(long, requires = "inspect")]
    pub images: Option<PathBuf>,
    /// At most this many images for --inspect, spread evenly over the folder.
    #[arg(long, default_value_t = crate::inspect::DEFAULT_LIMIT)]
    pub limit: usize,
    /// Compute device of --inspect.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: crate::device::DeviceChoice,
    /// Save a PNG of the window after a moment, then close (docs, checks).
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
}

/// `mimr app`: the start screen over the runs of the last session; with `--inspect`, that
/// inspection starts at once (its progress on the start screen, its result opened as a run).
pub fn app(args: AppArgs) -> Result<()> {
    if args.inspect.len() > 2 {
        bail!(
            "--inspect takes one checkpoint or two (A,B), got {}",
            args.inspect.len()
        );
    }
    let inspect = args.images.map(|images| {
        let mut spec = crate::inspect::InspectSpec::new(args.inspect, images);
        (spec.limit, spec.device) = (args.limit, args.device);
        spec
    });
    crate::app::run_native(crate::app::Launch {
        inspect,
        screenshot: args.screenshot,
        ..Default::default()
    })
}
