//! `mimr demo` (what a bare `mimr` / `cargo run --release` runs): refines the bundled MAE demo
//! model on the bundled Fashion-MNIST subset, live in the app, or headless with a kNN table.

use super::eval::{self as eval_cmd, Evaluated};
use super::{CkptArgs, DeviceArgs};
use crate::refine::config::RefineConfig;
use crate::train::Control;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The demo's config, relative to the mimr checkout.
const DEMO_CONFIG: &str = "configs/demo.toml";
/// The kNN vote reported in the demo's table (method.md §5.1), or the largest below it that
/// the bank allows.
const TABLE_K: usize = 20;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// The demo's config (default: configs/demo.toml of the current directory or of the mimr
    /// checkout this binary was built from).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. --set stage3.epochs=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run in the terminal even when a display is present.
    #[arg(long)]
    pub headless: bool,
}

pub fn run(args: Args) -> Result<()> {
    let path = match args.config {
        Some(p) => p,
        None => locate()?,
    };
    let cfg = RefineConfig::load(&path, &args.set)?;
    check_assets(&cfg)?;
    eprintln!("demo run directory: {}", cfg.run.dir.display());
    if !args.headless && has_display() {
        let launch = crate::app::Launch {
            refine: Some(Box::new(cfg.clone())),
            ..Default::default()
        };
        eprintln!(
            "opening the app on the demo refinement ({})",
            path.display()
        );
        match crate::app::run_native(launch) {
            Ok(()) => return Ok(()),
            Err(e) => eprintln!("the app could not open ({e:#}); running the demo headless"),
        }
    }
    headless(cfg)
}

/// `configs/demo.toml` of the checkout mimr was built from, else of the current directory when
/// that is a mimr checkout (a `Cargo.toml` naming the package `mimr`).
fn locate() -> Result<PathBuf> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEMO_CONFIG);
    if built.is_file() {
        return Ok(built);
    }
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap_or_default();
    let here = PathBuf::from(DEMO_CONFIG);
    if manifest.contains("name = \"mimr\"") && here.is_file() {
        return Ok(here);
    }
    bail!(
        "the demo needs {DEMO_CONFIG} and assets/ of the mimr repository: run mimr from the checkout, or pass --config"
    )
}

/// The demo's model and data must exist before anything starts (a clear message, not a failure
/// deep inside the run).
fn check_assets(cfg: &RefineConfig) -> Result<()> {
    for (what, path) in [("model", &cfg.model.checkpoint), ("data", &cfg.data.train)] {
        if !path.exists() {
            bail!(
                "the demo's {what} {} is missing: the demo needs assets/ of the mimr repository (git checkout assets/)",
                path.display()
            );
        }
    }
    Ok(())
}

/// Whether a window can open: always on macOS and Windows, on other systems when X11 or
/// Wayland is announced.
fn has_display() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    cfg!(any(target_os = "macos", windows)) || set("DISPLAY") || set("WAYLAND_DISPLAY")
}

/// Runs (or resumes, or re-reads a finished) refinement, then prints and saves the per-block
/// kNN of the MAE model and of the refined EMA encoder.
fn headless(cfg: RefineConfig) -> Result<()> {
    let control = Arc::new(Control::default());
    super::refine::on_ctrl_c(control.clone());
    let out = crate::refine::run::refine(cfg.clone(), &control).map_err(|e| {
        let hint = if format!("{e:#}").contains("differs from the stored config") {
            format!(
                "\n(the demo's run directory holds a run with other settings: delete {} or pass --set run.dir=\"…\")",
                cfg.run.dir.display()
            )
        } else {
            String::new()
        };
        e.context(format!("the demo refinement{hint}"))
    })?;
    if out.interrupted {
        println!(
            "stopped after {} steps; run the demo again to resume ({})",
            out.steps,
            out.run_dir.display()
        );
        return Ok(());
    }
    let refined = out.run_dir.join("encoder_ema.safetensors");
    let eval_dir = out.run_dir.join("demo_eval");
    let before = evaluate(&cfg, &cfg.model.checkpoint, &eval_dir.join("mae"))?;
    let after = evaluate(&cfg, &refined, &eval_dir.join("refined"))?;
    let table = knn_table(&cfg, &before, &after, (!out.completed).then_some(out.steps))?;
    println!("{table}");
    let path = out.run_dir.join("demo_knn.md");
    crate::fsutil::write_atomic(&path, table.as_bytes())?;
    println!(
        "saved {} (reports in {}); open the run with `mimr view {}`",
        path.display(),
        eval_dir.display(),
        out.run_dir.display()
    );
    Ok(())
}

/// kNN of every block (and of the final-norm output) of `checkpoint` on the demo data's own
/// split, bank and queries sized as the run's online evaluation; reports go to `out`.
fn evaluate(cfg: &RefineConfig, checkpoint: &Path, out: &Path) -> Result<Evaluated> {
    let args = eval_cmd::Args {
        ckpt: CkptArgs {
            checkpoint: checkpoint.to_path_buf(),
            heads: None,
            pos_interp: None,
        },
        device: DeviceArgs {
            device: cfg.run.device,
        },
        data: cfg.data.train.clone(),
        mean: cfg.data.views.mean.to_vec(),
        std: cfg.data.views.std.to_vec(),
        test_fraction: crate::data::eval_split::DEFAULT_TEST_FRACTION,
        split_seed: cfg.run.seed,
        blocks: "all".into(),
        pool: super::embed::PoolArg::Cls,
        final_norm: true,
        protocols: "knn".into(),
        train_limit: cfg.eval.train_size,
        test_limit: cfg.eval.test_size,
        image_size: None,
        probe_epochs: 0,
        out: out.to_path_buf(),
    };
    let done = eval_cmd::evaluate(&args)?;
    eval_cmd::write_reports(&args, &done)?;
    Ok(done)
}

/// The Markdown table: block, kNN before, after, difference; head blocks marked. `partial`:
/// the run stopped early after this many steps.
fn knn_table(
    cfg: &RefineConfig,
    before: &Evaluated,
    after: &Evaluated,
    partial: Option<u64>,
) -> Result<String> {
    let heads: Vec<String> = cfg.heads.blocks.iter().map(|b| b.to_string()).collect();
    let k = table_k(before)?;
    let when = partial.map_or("after refinement".to_string(), |s| {
        format!("after {s} steps (the run stopped early)")
    });
    let mut md = format!(
        "kNN accuracy ({k}, CLS token) per block, before and {when} ({})\n\n| block | MAE | refined (EMA) | change |\n|---|---|---|---|\n",
        cfg.data.train.display()
    );
    for (b, a) in before.rows.iter().zip(&after.rows) {
        let block = b["block"].as_str().context("eval row without a block")?;
        let knn = |r: &serde_json::Value| r["knn"][&k].as_f64();
        let (Some(x), Some(y)) = (knn(b), knn(a)) else {
            bail!("block {block}: no kNN {k} result");
        };
        let head = heads.contains(&block.to_string()) || (block == "final" && cfg.heads.main);
        let name = if head {
            format!("{block} (head)")
        } else {
            block.to_string()
        };
        md += &format!(
            "| {name} | {:.1} % | {:.1} % | {:+.1} |\n",
            100.0 * x,
            100.0 * y,
            100.0 * (y - x)
        );
    }
    Ok(md)
}

/// The kNN key of the table: `k20`, or the largest k the evaluation kept (a small bank).
fn table_k(e: &Evaluated) -> Result<String> {
    let first = e.rows.first().context("the evaluation scored no block")?;
    let ks = first["knn"].as_object().context("no kNN result")?;
    let best = ks
        .keys()
        .filter_map(|k| k.strip_prefix('k')?.parse::<usize>().ok())
        .filter(|&k| k <= TABLE_K)
        .max()
        .context("no kNN result with k ≤ 20")?;
    Ok(format!("k{best}"))
}
