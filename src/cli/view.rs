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
    })
}

/// `mimr app`: the app on the runs of the last session.
pub fn app() -> Result<()> {
    crate::app::run_native(crate::app::Launch::default())
}
