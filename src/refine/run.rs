//! The `mimr refine` driver: stage 2 then stage 3 (method.md §4.2) as a `train::Task`, so the
//! shared loop gives it resume, checkpoints, the run log, progress and pause/stop; plus snapshots.

use super::checkpoint;
use super::config::RefineConfig;
use super::online_eval::{self, OnlineEval};
use super::schedule::{Schedule, scaled_lr};
use super::trainer::{HeadStats, Trainer};
use crate::data::{self, Batch, Loader};
use crate::runlog::{self, Event, HeadStep, NnExamples, NnPair, RunLog, StepEvent};
use crate::train::{self, Control, RunDir, StepReport, Task};
use anyhow::{Context, Result, ensure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a refinement ended.
#[derive(Debug)]
pub struct Outcome {
    pub steps: u64,
    pub interrupted: bool,
    pub completed: bool,
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
        let mk = |s: &super::config::StageConfig, steps: u64| Schedule {
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

/// Runs (or resumes) the refinement described by `cfg` until done or `control` stops it.
pub fn refine(cfg: RefineConfig, control: &Control) -> Result<Outcome> {
    let ck = crate::checkpoint::load(&cfg.model.checkpoint, cfg.model.attention_heads)?;
    cfg.data
        .views
        .validate(ck.config.patch_size)
        .context("data.views")?;
    let full: Arc<dyn data::Dataset> = data::open(&cfg.data.train, cfg.data.split)?.into();
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
    let dir = RunDir::open(&cfg.run.dir, &cfg.to_toml()?, |old| same_run(&cfg, old))?;
    let selected = crate::device::select(cfg.run.device)?;
    tracing::info!("device: {} ({})", selected.label, selected.reason);
    let plan = Plan::new(&cfg, loader.batches_per_epoch() as u64);
    let settings = train::Settings {
        label: "refine".into(),
        steps_per_epoch: plan.spe,
        total_steps: plan.total(),
        max_steps: cfg.run.max_steps,
        checkpoint_every: cfg.run.checkpoint_every,
        keep_checkpoints: cfg.run.keep_checkpoints,
        log_every: cfg.run.log_every,
    };
    let trainer = Trainer::new(cfg.clone(), ck.config.clone(), &ck.tensors, selected.device)?;
    let mut task = Refinement {
        t: trainer,
        plan,
        online,
        dataset,
        device: selected.label,
    };
    let out = train::run(&mut task, &dir, &loader, &settings, control)?;
    Ok(Outcome {
        steps: out.steps,
        interrupted: out.interrupted,
        completed: out.completed,
        run_dir: dir.path().to_path_buf(),
        resumed_from: out.resumed_from,
    })
}

/// A resume must use the config the run started with, up to `run.max_steps` and `run.device`.
fn same_run(cfg: &RefineConfig, old: &str) -> Result<()> {
    let old: RefineConfig = toml::from_str(old).context("the stored config.toml is unreadable")?;
    let norm = |c: &RefineConfig| {
        let mut c = c.clone();
        c.run.max_steps = 0;
        c.run.device = cfg.run.device;
        c
    };
    ensure!(norm(&old) == norm(cfg), "the configs differ");
    Ok(())
}

/// The refinement as the shared training loop runs it.
pub struct Refinement {
    pub t: Trainer,
    plan: Plan,
    online: Option<OnlineEval>,
    dataset: Arc<dyn data::Dataset>,
    device: String,
}

impl Task for Refinement {
    fn header(&self) -> runlog::Header {
        runlog::Header {
            version: runlog::VERSION,
            minor: runlog::MINOR,
            kind: runlog::RunKind::Refine,
            config: serde_json::to_value(&self.t.cfg).unwrap_or_default(),
            heads: self.t.specs.iter().map(|s| s.name.clone()).collect(),
            dataset: self.dataset.describe(),
            device: self.device.clone(),
            encoder: serde_json::to_value(&self.t.vit).unwrap_or_default(),
        }
    }

    fn step(&mut self, batch: &Batch, step: u64) -> Result<StepReport> {
        ensure!(
            self.t.step == step,
            "internal: trainer at step {} asked for step {step}",
            self.t.step
        );
        let (stage, lr) = self.plan.at(step);
        let stats = self.t.step(batch, stage, lr)?;
        let loss: f64 = stats.iter().map(|s| s.loss).sum();
        let epoch = step / self.plan.spe;
        Ok(StepReport {
            loss,
            events: step_events(&self.t, step + 1, epoch, stage, lr, &stats),
            status: format!("stage {stage}  loss {loss:.4}"),
        })
    }

    fn on_fresh_start(&mut self, dir: &Path, log: &mut RunLog) -> Result<()> {
        let probe = self.t.cfg.run.probe_size;
        let thumbs = train::thumbnails::write(dir, self.dataset.as_ref(), probe)?;
        log.write(&Event::Thumbnails(thumbs))?;
        if let Some(ev) = &self.online {
            ev.run(&self.t, 0.0, log)?;
        }
        Ok(())
    }

    fn after_step(&mut self, step: u64, end: u64, log: &mut RunLog) -> Result<()> {
        let every = self.t.cfg.run.snapshot_every;
        if every > 0 && step.is_multiple_of(every) {
            snapshot(&self.t, self.dataset.as_ref(), log)?;
        }
        if let Some(ev) = self
            .online
            .as_ref()
            .filter(|e| e.due(step, self.plan.spe, end))
        {
            ev.run(&self.t, step as f64 / self.plan.spe as f64, log)?;
        }
        Ok(())
    }

    fn checkpoint_due(&self, step: u64) -> bool {
        step == self.plan.stage2_steps
    }

    fn save(&self, folder: &Path) -> Result<()> {
        checkpoint::save(&self.t, folder)
    }

    fn restore(&mut self, folder: &Path, step: u64) -> Result<()> {
        let s = checkpoint::load(&mut self.t, folder)?;
        ensure!(
            s.step == step,
            "{}: state.json says step {} but progress says {step}",
            folder.display(),
            s.step
        );
        Ok(())
    }

    fn finish(&mut self, dir: &Path, log: &mut RunLog, completed: bool) -> Result<()> {
        checkpoint::export_ema(&self.t, &dir.join("encoder_ema.safetensors"))?;
        if completed {
            snapshot(&self.t, self.dataset.as_ref(), log)?;
        }
        Ok(())
    }
}

/// The `step` and `nn_examples` events of one step (`step` = updates done, 1-based).
fn step_events(
    t: &Trainer,
    step: u64,
    epoch: u64,
    stage: u8,
    lr: f64,
    stats: &[HeadStats],
) -> Vec<Event> {
    let named = || t.specs.iter().map(|s| s.name.clone()).zip(stats);
    let heads: BTreeMap<String, HeadStep> = named()
        .map(|(n, st)| {
            let h = HeadStep {
                loss: st.loss,
                nn_similarity: st.nn_similarity,
                nn_accuracy: st.nn_accuracy,
                global_alignment: st.global_alignment,
                local_alignment: st.local_alignment,
            };
            (n, h)
        })
        .collect();
    let examples = named()
        .map(|(n, st)| {
            let pairs = st.examples.iter();
            let pairs = pairs.map(|&(sample, neighbour, same_label)| NnPair {
                sample,
                neighbour,
                same_label,
            });
            (n, pairs.collect())
        })
        .collect();
    vec![
        Event::Step(StepEvent {
            step,
            epoch,
            stage,
            lr,
            img_per_s: 0.0,
            heads,
        }),
        Event::NnExamples(NnExamples {
            step,
            heads: examples,
        }),
    ]
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
    log.write(&Event::Snapshot(runlog::Snapshot {
        step: t.step,
        file,
        samples: n,
    }))
}
