//! Command-line interface (clap): `demo` (the default), `info`, `embed`, `eval`, `export`, `refine`,
//! `pretrain`, `inspect`, `view`/`app`, `data` and `bench`, each a small module over the library;
//! errors print their context.

mod bench;
mod bench_map;
mod bench_refine;
mod bench_view;
mod data;
mod demo;
mod embed;
mod eval;
mod export;
mod info;
mod inspect;
mod logging;
mod pretrain;
mod refine;
mod view;

use crate::device::DeviceChoice;
use crate::model::pos_embed::PosInterp;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "mimr",
    version,
    about = "MIM-Refiner in Rust: load, inspect, embed and refine MIM ViTs"
)]
pub struct Cli {
    /// More log detail: -v debug, -vv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Without a command: `mimr demo`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a checkpoint's format, architecture and parameter count.
    Info(info::Args),
    /// Write per-block features of images or a tensor to a safetensors file.
    Embed(embed::Args),
    /// Per-block kNN, linear probe, low-shot and clustering metrics of a checkpoint.
    Eval(eval::Args),
    /// Export a checkpoint's encoder as safetensors in timm/hub key names.
    Export(export::Args),
    /// Refine an encoder with NNA heads (stage 2 + stage 3); resumes automatically.
    Refine(refine::Args),
    /// Pre-train an MAE from scratch; exports the encoder; resumes automatically.
    Pretrain(pretrain::Args),
    /// Inspect datasets: manifest and augmented-view previews.
    Data(data::Args),
    /// Per-block features of one or two checkpoints on an image folder, as a run-like directory.
    Inspect(inspect::Args),
    /// Throughput benchmarks.
    Bench(bench::Args),
    /// Open run directories in the desktop app (live while they grow).
    View(view::Args),
    /// Open the desktop app: its start screen (open, refine, inspect) and the last session's runs.
    App(view::AppArgs),
    /// The bundled demo (the default): refine the MAE demo model in the app, or headless with a
    /// per-block kNN table before and after.
    Demo(demo::Args),
}

/// The `--config FILE` and `--set KEY=VALUE` options of the training commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Run configuration (TOML); see configs/.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key, e.g. --set stage3.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Options shared by commands that load a checkpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct CkptArgs {
    /// Checkpoint: .pth (MAE), .pt (data2vec 2.0), .th (MIM-Refiner) or .safetensors.
    pub checkpoint: PathBuf,
    /// Attention heads, when the file does not say and the width is not a standard ViT's.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Positional-embedding resize for other image sizes: bicubic (plain PyTorch bicubic, as the
    /// MAE / data2vec 2.0 / MIM-Refiner code) or bicubic-antialias (timm's default). Default: by
    /// checkpoint family (.pth/.pt/.th → bicubic; safetensors and bare state dicts →
    /// bicubic-antialias, unless the file's metadata says otherwise).
    #[arg(long, value_enum)]
    pub pos_interp: Option<PosInterp>,
}

impl CkptArgs {
    /// Loads the checkpoint with `--heads` and `--pos-interp` applied.
    pub fn load(&self) -> anyhow::Result<crate::checkpoint::Checkpoint> {
        Ok(crate::checkpoint::load(&self.checkpoint, self.heads)?.with_pos_interp(self.pos_interp))
    }
}

/// The `--device` option.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// auto: a hardware GPU via wgpu if present, else CPU; wgpu: any wgpu adapter; cpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

impl DeviceArgs {
    /// Selects the device and tells the user which one and why (on stderr).
    pub fn select(&self) -> anyhow::Result<burn::tensor::Device> {
        let s = crate::device::select(self.device)?;
        tracing::info!("device: {} ({})", s.label, s.reason);
        Ok(s.device)
    }
}

/// Runs the CLI and maps errors to exit code 1 with the whole context chain.
pub fn main() -> std::process::ExitCode {
    crate::device::quiet_headless_vulkan();
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let command = cli.command.unwrap_or(Command::Demo(demo::Args::default()));
    let result = match command {
        Command::Info(a) => info::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Export(a) => export::run(a),
        Command::Refine(a) => refine::run(a),
        Command::Pretrain(a) => pretrain::run(a),
        Command::Data(a) => data::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Bench(a) => bench::run(a),
        Command::View(a) => view::run(a),
        Command::App(a) => view::app(a),
        Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
