//! `mimr refine --config run.toml [--set key=value …]`: validates the config, then runs or
//! resumes the refinement; Ctrl-C finishes the step, writes a checkpoint and exits cleanly.

use crate::refine::config::RefineConfig;
use crate::train::Control;
use anyhow::Result;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: super::ConfigArgs,
}

pub fn run(args: Args) -> Result<()> {
    let comm = crate::dist::connect(crate::dist::Launch::from_env()?)?;
    match refine(args, comm.clone()) {
        // a rank that fails alone would leave the others waiting in a collective: end the job
        Err(e) if comm.size() > 1 => {
            eprintln!("error on rank {} of {}: {e:#}", comm.rank(), comm.size());
            comm.abort(1)
        }
        other => other,
    }
}

fn refine(args: Args, comm: Arc<dyn crate::dist::Comm>) -> Result<()> {
    let cfg = RefineConfig::load(&args.run.config, &args.run.set)?;
    let control = Arc::new(Control::default());
    on_ctrl_c(control.clone());
    let rank = comm.rank();
    let out = crate::refine::run::refine_ranked(cfg, &control, comm)?;
    if rank > 0 {
        return Ok(());
    }
    println!(
        "{} after {} steps; run dir {} (encoder_ema.safetensors, events.jsonl, checkpoints/)",
        if out.interrupted {
            "stopped"
        } else {
            "finished"
        },
        out.steps,
        out.run_dir.display()
    );
    Ok(())
}

/// The first Ctrl-C asks the loop to stop after its step (it writes a checkpoint); a second one
/// exits at once (the newest checkpoint on disk stays complete either way).
pub fn on_ctrl_c(control: Arc<Control>) {
    let installed = ctrlc::set_handler(move || {
        if control.stopped() {
            std::process::exit(130);
        }
        crate::progress::suspend(|| {
            eprintln!(
                "\nCtrl-C: finishing the current step and writing a checkpoint (press again to abort)"
            )
        });
        control.stop();
    });
    if let Err(e) = installed {
        tracing::warn!("Ctrl-C handler not installed: {e}");
    }
}
