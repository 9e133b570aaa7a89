//! The `mimr refine` driver: stage 2 then stage 3 (method.md §4.2) as a `train::Task`, so the
//! shared loop gives it resume, checkpoints, the run log, progress and pause/stop; plus snapshots.

use super::checkpoint;
use super::config::{RefineConfig, SnapshotBlocks};
use super::nn_thumbs::NnThumbs;
use super::online_eval::{self, OnlineEval};
use super::schedule::{Schedule, scaled_lr};
use super::trainer::{HeadStats, Trainer};
use crate::data::{self, Batch};
use crate::dist::{Comm, Single};
use crate::model::features::{self, Tap};
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
    refine_ranked(cfg, control, Arc::new(Single))
}

/// [`refine`] as one rank of a data-parallel job (`comm`; README "Several GPUs"): every rank
/// loads the same config, encodes its share of each batch on its own device, and takes the
/// same update; rank 0 alone owns the run directory, its lock, log, checkpoints and evaluations.
pub fn refine_ranked(cfg: RefineConfig, control: &Control, comm: Arc<dyn Comm>) -> Result<Outcome> {
    let (rank, ranks) = (comm.rank(), comm.size());
    if ranks > 1 {
        same_config_on_every_rank(&*comm, &cfg)?;
    }
    let ck = cfg.model.load()?;
    cfg.data
        .views
        .validate(ck.config.patch_size)
        .context("data.views")?;
    let full: Arc<dyn data::Dataset> = data::open(&cfg.data.train, cfg.data.split)?.into();
    let online = match rank {
        0 => OnlineEval::new(&cfg, full.clone())?,
        _ => None,
    };
    let (dataset, loader) = cfg.data.loader(full, cfg.run.seed)?;
    let loader = loader.with_shard(rank, ranks)?;
    let dir = match rank {
        0 => Some(RunDir::open(&cfg.run.dir, &cfg.to_toml()?, |old| {
            same_run(&cfg, old)
        })?),
        _ => None,
    };
    let selected = crate::device::select_for_rank(cfg.run.device, comm.local_rank())?;
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
    let trainer = Trainer::new(cfg.clone(), ck.config.clone(), &ck.tensors, selected.device)?
        .with_comm(comm.clone());
    let mut task = Refinement {
        t: trainer,
        plan,
        online,
        dataset,
        device: selected.label,
        last_snapshot: None,
        nn_thumbs: NnThumbs::default(),
    };
    let out = train::run_ranked(&mut task, dir.as_ref(), &loader, &settings, control, &*comm)?;
    if ranks > 1 {
        let (c, total) = (
            task.t.comm_time.as_secs_f64(),
            task.t.step_time.as_secs_f64(),
        );
        tracing::info!(
            "rank {rank}: collectives and their host copies took {c:.2} s of {total:.2} s in steps ({:.1} %)",
            100.0 * c / total.max(1e-9)
        );
        let digest = checkpoint::state_bytes(&task.t)?;
        if let Err(e) = crate::dist::ensure_same(&*comm, "training state", &digest) {
            tracing::warn!("ranks hold different states after the last step: {e:#}");
        }
    }
    Ok(Outcome {
        steps: out.steps,
        interrupted: out.interrupted,
        completed: out.completed,
        run_dir: cfg.run.dir.clone(),
        resumed_from: out.resumed_from,
    })
}

/// Every rank must run rank 0's config; the error names the first key that differs. All ranks
/// learn the verdict before any of them touches the run directory.
fn same_config_on_every_rank(comm: &dyn Comm, cfg: &RefineConfig) -> Result<()> {
    let mine = cfg.to_toml()?;
    let leader: String = crate::dist::broadcast_json(comm, (comm.rank() == 0).then_some(&mine))?;
    let parse = |t: &str| toml::from_str::<toml::Value>(t);
    let differs = first_difference(&parse(&leader)?, &parse(&mine)?, "");
    let verdicts = comm.all_gather_u64(&[u64::from(differs.is_some())]);
    if let Some(key) = differs {
        anyhow::bail!(
            "rank {}: config key `{key}` differs from rank 0's: start every rank with the same --config and --set",
            comm.rank()
        );
    }
    match verdicts.iter().position(|&v| v == 1) {
        Some(r) => {
            // rank r reports the key and ends the job; a rank that failed first would kill it
            // before its message is out, so give it time
            std::thread::sleep(std::time::Duration::from_secs(10));
            anyhow::bail!("rank {r}'s config differs from rank 0's (its message names the key)")
        }
        None => Ok(()),
    }
}

/// A resume must use the config the run started with, up to settings that do not change the
/// result: `run.max_steps`, `run.device`, `data.workers`, and how the paths are spelled.
fn same_run(cfg: &RefineConfig, old: &str) -> Result<()> {
    let old: RefineConfig = toml::from_str(old).context("the stored config.toml is unreadable")?;
    let norm = |c: &RefineConfig| -> Result<toml::Value> {
        let mut c = c.clone();
        c.run.max_steps = 0;
        c.run.device = cfg.run.device;
        c.data.workers = cfg.data.workers;
        c.run.dir = cfg.run.dir.clone();
        for p in [&mut c.data.train, &mut c.model.checkpoint] {
            if let Ok(abs) = std::fs::canonicalize(&*p) {
                *p = abs;
            }
        }
        Ok(toml::Value::try_from(c)?)
    };
    match first_difference(&norm(&old)?, &norm(cfg)?, "") {
        None => Ok(()),
        Some(key) => anyhow::bail!("`{key}` differs from the stored config"),
    }
}

/// The dotted path of the first value that differs between two TOML trees.
pub(crate) fn first_difference(a: &toml::Value, b: &toml::Value, at: &str) -> Option<String> {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => first_difference(v, w, &path),
                    _ => Some(path),
                }
            })
        }
        _ => (a != b).then(|| at.to_string()),
    }
}

/// The refinement as the shared training loop runs it.
pub struct Refinement {
    pub t: Trainer,
    plan: Plan,
    online: Option<OnlineEval>,
    dataset: Arc<dyn data::Dataset>,
    device: String,
    /// The step of the newest snapshot written by this process.
    last_snapshot: Option<u64>,
    /// Writes the images of the logged NN pairs.
    nn_thumbs: NnThumbs,
}

impl Refinement {
    fn snapshot(&mut self, log: &mut RunLog) -> Result<()> {
        if self.last_snapshot != Some(self.t.step) {
            snapshot(&self.t, self.dataset.as_ref(), log)?;
            self.last_snapshot = Some(self.t.step);
        }
        Ok(())
    }

    /// Gives this step's `nn_examples` event its pair atlas when the step is logged (the loop
    /// logs multiples of `run.log_every`; a last step logged besides them gets none) and the
    /// writer's time budget allows (`nn_thumbs::BUDGET`).
    fn attach_pair_images(&mut self, events: &mut [Event], step: u64) {
        if !step.is_multiple_of(self.t.cfg.run.log_every) {
            return;
        }
        for e in events {
            if let Event::NnExamples(ex) = e {
                let dir = &self.t.cfg.run.dir;
                self.nn_thumbs.attach(dir, self.dataset.as_ref(), ex);
            }
        }
    }
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
        let mut events = step_events(&self.t, step + 1, epoch, stage, lr, &stats);
        self.attach_pair_images(&mut events, step + 1);
        Ok(StepReport {
            loss,
            events,
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
        if (every > 0 && step.is_multiple_of(every)) || step == self.plan.stage2_steps {
            self.snapshot(log)?;
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
            self.snapshot(log)?;
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
            time: None,
            heads,
        }),
        Event::NnExamples(NnExamples {
            step,
            heads: examples,
            thumbnails: None,
        }),
    ]
}

/// Embeds the fixed probe subset (first `probe_size` samples, eval transform; unreadable ones
/// skipped) with the EMA encoder and writes `snapshots/step-<n>.safetensors` (a tensor per head,
/// with `run.snapshot_blocks = "all"` also `block.<i>` per encoder block; `labels` and the rows'
/// dataset `index`) and a log event.
pub fn snapshot(t: &Trainer, ds: &dyn data::Dataset, log: &mut RunLog) -> Result<()> {
    let size = t.cfg.data.views.global_size();
    let (mut imgs, mut labels, mut index, mut skipped) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for i in 0..t.cfg.run.probe_size.min(ds.len()) {
        let Some(s) = data::get_or_skip(ds, i, &mut skipped) else {
            continue;
        };
        imgs.extend(online_eval::eval_image(&t.cfg.data.views, &s.image, size));
        labels.push(s.label.map_or(-1.0, |l| l as f32));
        index.push(i as f32);
    }
    let n = index.len();
    let mut map = crate::host::TensorMap::new();
    for (name, f) in snapshot_features(t, imgs, n)? {
        let dim = f.len() / n.max(1);
        map.insert(name, crate::host::HostTensor::new(vec![n, dim], f)?);
    }
    let row = |v| crate::host::HostTensor::new(vec![n], v);
    map.insert("labels".into(), row(labels)?);
    map.insert("index".into(), row(index)?);
    let file = format!("snapshots/step-{:09}.safetensors", t.step);
    crate::checkpoint::st::write(&t.cfg.run.dir.join(&file), &map, Default::default())?;
    log.write(&Event::Snapshot(runlog::Snapshot {
        step: t.step,
        file,
        samples: n,
        skipped,
    }))
}

/// Images per forward pass of a snapshot (as online evaluation's).
const SNAPSHOT_BATCH: usize = 128;

/// The EMA encoder's features `[n, dim]` of `n` eval-transformed images, pooled as `heads.pool`,
/// named as in the snapshot file: each head's tap, then (`run.snapshot_blocks = "all"`) every
/// block as `block.<i>` — all from one forward pass per chunk.
fn snapshot_features(t: &Trainer, imgs: Vec<f32>, n: usize) -> Result<Vec<(String, Vec<f32>)>> {
    let mut named: Vec<(String, Tap)> = t.specs.iter().map(|s| (s.name.clone(), s.block)).collect();
    if t.cfg.run.snapshot_blocks == SnapshotBlocks::All {
        named.extend((0..t.ema.depth()).map(|b| (format!("block.{b}"), Some(b))));
    }
    if n == 0 || imgs.is_empty() {
        return Ok(named
            .into_iter()
            .map(|(name, _)| (name, Vec::new()))
            .collect());
    }
    let size = ((imgs.len() / n / 3) as f64).sqrt() as usize;
    let taps: Vec<Tap> = named.iter().map(|(_, tap)| *tap).collect();
    let chunks = features::chunks_of(&imgs, [n, 3, size, size], SNAPSHOT_BATCH);
    let feats = features::extract(&t.ema, chunks, &taps, t.cfg.heads.pool, &t.device, |_| {})?;
    let names = named.into_iter().map(|(name, _)| name);
    Ok(names.zip(feats.into_iter().map(|f| f.data)).collect())
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn the_first_differing_key_is_named() {
        let a: toml::Value = toml::from_str("[x]\ny = 1\nz = [1, 2]\n[w]\nv = true").unwrap();
        let b: toml::Value = toml::from_str("[x]\ny = 1\nz = [1, 3]\n[w]\nv = true").unwrap();
        assert_eq!(first_difference(&a, &b, ""), Some("x.z".into()));
        assert_eq!(first_difference(&a, &a, ""), None);
        let c: toml::Value = toml::from_str("[x]\ny = 1\nz = [1, 2]").unwrap();
        assert_eq!(first_difference(&a, &c, ""), Some("w".into()));
    }
}
