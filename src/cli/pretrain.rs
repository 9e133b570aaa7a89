//! `mimr pretrain --config run.toml [--set key=value …]`: validates the config, then runs or
//! resumes MAE pre-training; Ctrl-C finishes the step, writes a checkpoint and exits cleanly.

use crate::pretrain::config::PretrainConfig;
use crate::train::Control;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run configuration (TOML); see configs/mae_fashion_mnist.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key, e.g. --set optim.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = PretrainConfig::load(&args.config, &args.set)?;
    let control = Arc::new(Control::default());
    super::refine::on_ctrl_c(control.clone());
    let out = crate::pretrain::run::pretrain(cfg, &control)?;
    println!(
        "{} after {} steps; run dir {} ({}, events.jsonl, checkpoints/)",
        if out.interrupted {
            "stopped"
        } else {
            "finished"
        },
        out.steps,
        out.run_dir.display(),
        crate::pretrain::run::ENCODER_FILE
    );
    Ok(())
}
