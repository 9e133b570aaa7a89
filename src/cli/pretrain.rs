//! `mimr pretrain --config run.toml [--set key=value …]`: validates the config, then runs or
//! resumes MAE pre-training; Ctrl-C finishes the step, writes a checkpoint and exits cleanly.

use crate::pretrain::config::PretrainConfig;
use crate::train::Control;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: super::ConfigArgs,
    /// Train nothing: write the freshly initialised encoder (seed `run.seed`) to this file, as
    /// the random-initialisation control of a refinement.
    #[arg(long, value_name = "FILE")]
    pub init_only: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let launch = crate::dist::Launch::from_env()?;
    anyhow::ensure!(
        launch.size == 1,
        "mimr pretrain runs as one process (this is rank {} of {}): data-parallel runs are for `mimr refine`",
        launch.rank,
        launch.size
    );
    let cfg = PretrainConfig::load(&args.run.config, &args.run.set)?;
    if let Some(path) = &args.init_only {
        let mae = cfg.model.mae()?;
        let model =
            crate::model::mae::Mae::init(&mae, &burn::tensor::Device::flex(), cfg.run.seed)?;
        crate::pretrain::run::export_encoder(&model, &mae, path)?;
        println!(
            "wrote the initial encoder (seed {}) to {}",
            cfg.run.seed,
            path.display()
        );
        return Ok(());
    }
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
