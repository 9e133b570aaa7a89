//! The `mimr refine` driver: stage 2 then stage 3 (method.md §4.2), with auto-resume from the
//! newest checkpoint, the run log, probe-set embedding snapshots, and a clean Ctrl-C stop.

use super::checkpoint;
use super::online_eval::{self, OnlineEval};
use super::runlog::RunLog;
use super::schedule::{Schedule, scaled_lr};
use super::trainer::{HeadStats, Trainer};
use crate::config::RefineConfig;
use crate::data::{self, Loader, Split};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub steps: u64,
    pub interrupted: bool,
    pub run_dir: PathBuf,
    pub resumed_from: Option<u64>,
}

/// Steps of each stage and their schedules for `spe` batches per epoch.
pub struct Plan {
    pub spe: u64,
    pub stage2_steps: u64,
    pub stage3_steps: u64,
    pub stage2: Schedule,
    pub stage3: Schedule,
}

impl Plan {
    pub fn new(cfg: &RefineConfig, spe: u64) -> Self {
        let mk = |s: &crate::config::StageConfig, steps: u64| Schedule {
            peak: scaled_lr(s.base_lr, cfg.data.batch_size),
            floor: s.min_lr,
            warmup_steps: (s.warmup_epochs * spe as f64).round() as u64,
            total_steps: steps,
        };
        let (s2, s3) = (
            cfg.stage2.epochs as u64 * spe,
            cfg.stage3.epochs as u64 * spe,
        );
        Self {
            spe,
            stage2_steps: s2,
            stage3_steps: s3,
            stage2: mk(&cfg.stage2, s2),
            stage3: mk(&cfg.stage3, s3),
        }
    }

    pub fn total(&self) -> u64 {
        self.stage2_steps + self.stage3_steps
    }

    /// (stage, LR) of global step `s`.
    pub fn at(&self, s: u64) -> (u8, f64) {
        if s < self.stage2_steps {
            (2, self.stage2.lr(s))
        } else {
            (3, self.stage3.lr(s - self.stage2_steps))
        }
    }
}

/// Runs (or resumes) the refinement described by `cfg` until done or `stop` is raised.
pub fn refine(cfg: RefineConfig, stop: Arc<AtomicBool>) -> Result<Outcome> {
    let ck = crate::checkpoint::load(&cfg.model.checkpoint, cfg.model.attention_heads)?;
    cfg.data
        .views
        .validate(ck.config.patch_size)
        .context("data.views")?;
    let split: Split = cfg.data.split.parse().context("data.split")?;
    let full: Arc<dyn data::Dataset> = data::open(&cfg.data.train, split)?.into();
    let online = OnlineEval::new(&cfg, full.clone())?;
    let mut dataset = full;
    if let Some(limit) = cfg.data.limit {
        dataset = Arc::new(data::subset::Subset::new(dataset, limit));
    }
    let loader = Loader::new(
        dataset.clone(),
        cfg.data.views.clone(),
        cfg.data.batch_size,
        cfg.run.seed,
        cfg.data.workers,
        4,
    )?;
    let dir = cfg.run.dir.clone();
    prepare_dir(&cfg)?;
    let selected = crate::device::select(cfg.run.device)?;
    eprintln!("device: {} ({})", selected.label, selected.reason);
    let mut t = Trainer::new(cfg.clone(), ck.config.clone(), &ck.tensors, selected.device)?;
    let latest = checkpoint::list(&dir)?.pop();
    let (resumed_from, offset) = match &latest {
        Some(p) => {
            let s = checkpoint::load(&mut t, p)?;
            eprintln!("resuming from {} (step {})", p.display(), s.step);
            (Some(s.step), Some(s.log_offset))
        }
        None => (None, None),
    };
    let header = json!({"config": cfg, "heads": t.specs.iter().map(|s| &s.name).collect::<Vec<_>>(),
        "dataset": dataset.describe(), "device": selected.label, "encoder": ck.config});
    let mut log = RunLog::open(&dir, offset, header)?;
    let plan = Plan::new(&cfg, loader.batches_per_epoch() as u64);
    let end = if cfg.run.max_steps > 0 {
        plan.total().min(cfg.run.max_steps)
    } else {
        plan.total()
    };
    if let (Some(ev), None) = (&online, resumed_from) {
        ev.run(&t, 0.0, &mut log)?;
    }
    let hooks = Hooks {
        online: online.as_ref(),
        stop: &stop,
    };
    let interrupted = train_loop(&mut t, &loader, &plan, end, &mut log, &hooks)?;
    let off = log.offset()?;
    checkpoint::save(&t, &dir, off, cfg.run.keep_checkpoints)?;
    checkpoint::export_ema(&t, &dir.join("encoder_ema.safetensors"))?;
    if !interrupted && t.step >= plan.total() {
        snapshot(&t, dataset.as_ref(), &mut log)?;
        log.write(json!({"type": "end", "step": t.step}))?;
    }
    Ok(Outcome {
        steps: t.step,
        interrupted,
        run_dir: dir,
        resumed_from,
    })
}

fn prepare_dir(cfg: &RefineConfig) -> Result<()> {
    let dir = &cfg.run.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run dir {}", dir.display()))?;
    let path = dir.join("config.toml");
    if path.exists() && !crate::refine::checkpoint::list(dir)?.is_empty() {
        let old: RefineConfig =
            toml::from_str(&std::fs::read_to_string(&path)?).with_context(|| {
                format!(
                    "{}: unreadable; move the run dir away or fix it",
                    path.display()
                )
            })?;
        let same = |c: &RefineConfig| {
            let mut c = c.clone();
            c.run.max_steps = 0;
            c.run.device = cfg.run.device;
            c
        };
        anyhow::ensure!(
            same(&old) == same(cfg),
            "{} was started with a different config ({}); resuming would mix runs: use another run.dir",
            dir.display(),
            path.display()
        );
    }
    crate::fsutil::write_atomic(&path, cfg.to_toml()?.as_bytes())
}

/// What the training loop runs besides steps: online evaluation and the stop flag.
struct Hooks<'a> {
    online: Option<&'a OnlineEval>,
    stop: &'a AtomicBool,
}

fn train_loop(
    t: &mut Trainer,
    loader: &Loader,
    plan: &Plan,
    end: u64,
    log: &mut RunLog,
    hooks: &Hooks,
) -> Result<bool> {
    let cfg = t.cfg.clone();
    let started = Instant::now();
    let first = t.step;
    while t.step < end {
        let (epoch, pos) = (t.step / plan.spe, (t.step % plan.spe) as usize);
        let before = t.step;
        let mut it = if pos == 0 {
            loader.epoch(epoch)
        } else if t.data_pos.batch == pos {
            loader.epoch_from(epoch, t.data_pos)
        } else {
            // a checkpoint without the loader position (older version): re-read up to the step
            let mut it = loader.epoch(epoch);
            for b in it.by_ref().take(pos) {
                b?;
            }
            it
        };
        while let Some(batch) = it.next() {
            let batch = batch?;
            let (stage, lr) = plan.at(t.step);
            let t0 = Instant::now();
            let stats = t.step(&batch, stage, lr)?;
            t.data_pos = it.position();
            let ips = batch.len() as f64 / t0.elapsed().as_secs_f64();
            if t.step.is_multiple_of(cfg.run.log_every) || t.step == end {
                log_step(log, t.step, epoch, stage, lr, ips, &t.specs, &stats)?;
            }
            progress(t.step, end, first, started, stage, &stats, batch.len());
            // events first, then the checkpoint: a resume from it never loses an event
            if cfg.run.snapshot_every > 0 && t.step.is_multiple_of(cfg.run.snapshot_every) {
                snapshot(t, loader.dataset().as_ref(), log)?;
            }
            if let Some(ev) = hooks.online.filter(|e| e.due(t.step, plan.spe, end)) {
                ev.run(t, t.step as f64 / plan.spe as f64, log)?;
            }
            let boundary = t.step == plan.stage2_steps || t.step == end;
            if t.step.is_multiple_of(cfg.run.checkpoint_every) || boundary {
                let off = log.offset()?;
                checkpoint::save(t, &cfg.run.dir, off, cfg.run.keep_checkpoints)?;
            }
            if hooks.stop.load(Ordering::SeqCst) {
                eprintln!("\ninterrupted at step {}: writing a checkpoint", t.step);
                return Ok(true);
            }
            if t.step >= end || t.step.is_multiple_of(plan.spe) {
                break;
            }
        }
        anyhow::ensure!(
            t.step > before,
            "epoch {epoch} yielded no batch at position {pos}: too many unreadable samples?"
        );
        anyhow::ensure!(
            t.step.is_multiple_of(plan.spe) || t.step >= end,
            "epoch {epoch} ended after {} of {} batches: too few readable samples in {} to fill a batch ({} unreadable seen since the epoch (re)started); fix or remove them",
            t.step % plan.spe,
            plan.spe,
            loader.dataset().describe(),
            it.skipped()
        );
    }
    eprintln!();
    Ok(false)
}

#[allow(clippy::too_many_arguments)]
fn log_step(
    log: &mut RunLog,
    step: u64,
    epoch: u64,
    stage: u8,
    lr: f64,
    ips: f64,
    specs: &[super::trainer::HeadSpec],
    stats: &[HeadStats],
) -> Result<()> {
    let heads: serde_json::Map<String, serde_json::Value> = specs
        .iter()
        .zip(stats)
        .map(|(s, st)| (s.name.clone(), serde_json::to_value(st).unwrap_or_default()))
        .collect();
    log.write(json!({"type": "step", "step": step, "epoch": epoch, "stage": stage, "lr": lr, "img_per_s": ips, "heads": heads}))?;
    let examples: serde_json::Map<String, serde_json::Value> = specs
        .iter()
        .zip(stats)
        .map(|(s, st)| {
            (
                s.name.clone(),
                json!(
                    st.examples
                        .iter()
                        .map(
                            |(a, b, same)| json!({"sample": a, "neighbour": b, "same_label": same})
                        )
                        .collect::<Vec<_>>()
                ),
            )
        })
        .collect();
    log.write(json!({"type": "nn_examples", "step": step, "heads": examples}))
}

fn progress(
    step: u64,
    end: u64,
    first: u64,
    started: Instant,
    stage: u8,
    stats: &[HeadStats],
    batch: usize,
) {
    let done = (step - first) as f64;
    let secs = started.elapsed().as_secs_f64();
    let eta = if done > 0.0 {
        secs / done * (end - step) as f64
    } else {
        0.0
    };
    let loss: f64 = stats.iter().map(|s| s.loss).sum();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        if step.is_multiple_of(50) || step == end {
            eprintln!(
                "[stage {stage}] step {step}/{end}  loss {loss:.4}  {:.1} img/s  ETA {:.0}s",
                done * batch as f64 / secs.max(1e-9),
                eta
            );
        }
        return;
    }
    eprint!(
        "\r[stage {stage}] step {step}/{end}  loss {loss:.4}  {:.1} img/s  ETA {:.0}s   ",
        done * batch as f64 / secs.max(1e-9),
        eta
    );
}

/// Embeds the fixed probe subset (first `probe_size` samples, eval transform) with the EMA
/// encoder at every head's block and writes `snapshots/step-<n>.safetensors` + a log event.
pub fn snapshot(t: &Trainer, ds: &dyn data::Dataset, log: &mut RunLog) -> Result<()> {
    let n = t.cfg.run.probe_size.min(ds.len());
    let size = t.cfg.data.views.global_size();
    let (mut imgs, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let s = ds.get(i)?;
        imgs.extend(online_eval::eval_image(t, &s.image, size));
        labels.push(s.label.map_or(-1.0, |l| l as f32));
    }
    let mut map = crate::host::TensorMap::new();
    for (s, f) in t.specs.iter().zip(online_eval::embed_heads(t, imgs, n)?) {
        let dim = f.len() / n.max(1);
        map.insert(
            s.name.clone(),
            crate::host::HostTensor::new(vec![n, dim], f)?,
        );
    }
    map.insert(
        "labels".into(),
        crate::host::HostTensor::new(vec![n], labels)?,
    );
    let file = format!("snapshots/step-{:09}.safetensors", t.step);
    crate::checkpoint::st::write(&t.cfg.run.dir.join(&file), &map, Default::default())?;
    log.write(json!({"type": "snapshot", "step": t.step, "file": file, "samples": n}))
}
