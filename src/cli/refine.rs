//! `mimr refine --config run.toml [--set key=value …]`: validates the config, then runs or
//! resumes the refinement; Ctrl-C writes a checkpoint and exits cleanly.

use crate::config::RefineConfig;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run configuration (TOML); see configs/.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config key, e.g. --set stage3.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let cfg = RefineConfig::load(&args.config, &args.set)?;
    let stop = Arc::new(AtomicBool::new(false));
    install_sigint(stop.clone());
    let out = crate::refine::run::refine(cfg, stop)?;
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

static SIGINT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_signal: libc::c_int) {
    if SIGINT.swap(true, Ordering::SeqCst) {
        // second Ctrl-C: abort at once (async-signal-safe exit)
        unsafe { libc::_exit(130) };
    }
}

/// Routes Ctrl-C (SIGINT) to `stop`: the run finishes its step, checkpoints and exits; a second
/// Ctrl-C aborts immediately.
fn install_sigint(stop: Arc<AtomicBool>) {
    // SAFETY: the handler only touches an atomic and calls the async-signal-safe `_exit`.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    std::thread::spawn(move || {
        while !SIGINT.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "\nCtrl-C: finishing the current step and writing a checkpoint (press again to abort)"
        );
        stop.store(true, Ordering::SeqCst);
    });
}
