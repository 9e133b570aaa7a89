//! The `mimr pretrain` driver: MAE pre-training (random masking, encoder + decoder, pixel loss,
//! AdamW with warmup + cosine) as a `train::Task`, exporting the encoder in timm names at the end.

use super::config::PretrainConfig;
use super::monitor::Monitor;
use crate::data::{self, Batch};
use crate::host::TensorMap;
use crate::model::mae::{Mae, MaeConfig, random_masking};
use crate::refine::optim::{AdamW, Group, SavedSteps, param_values};
use crate::refine::schedule::{Schedule, decays, scaled_lr};
use crate::rng::Rng;
use crate::runlog::{self, Event, PretrainStep, RunLog};
use crate::train::state_file::{
    self, Check, STATE_FILE, Shapes, TENSORS_FILE, prefixed, shapes, strip,
};
use crate::train::{self, Control, RunDir, StepReport, Task};
use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Sub-stream key of the per-step masking noise (`b"MASK"`).
const MASK_KEY: u64 = 0x4D41_534B;
/// File name of the exported encoder in the run directory.
pub const ENCODER_FILE: &str = "encoder.safetensors";

/// How a pre-training run ended.
#[derive(Debug)]
pub struct Outcome {
    pub steps: u64,
    pub interrupted: bool,
    pub completed: bool,
    pub run_dir: PathBuf,
    pub resumed_from: Option<u64>,
}

/// The scalar state of a checkpoint next to its tensors (`state.safetensors`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct State {
    step: u64,
    opt_steps: BTreeMap<String, u64>,
}

/// Runs (or resumes) the pre-training described by `cfg` until done or `control` stops it.
pub fn pretrain(cfg: PretrainConfig, control: &Control) -> Result<Outcome> {
    let mae = cfg.model.mae()?;
    let full: Arc<dyn data::Dataset> = data::open(&cfg.data.train, cfg.data.split)?.into();
    let monitor = Monitor::new(&cfg, full.clone())?;
    let (dataset, loader) = cfg.data.loader(full, cfg.run.seed)?;
    let dir = RunDir::open(&cfg.run.dir, &cfg.to_toml()?, |old| same_run(&cfg, old))?;
    let selected = crate::device::select(cfg.run.device)?;
    tracing::info!("device: {} ({})", selected.label, selected.reason);
    let spe = loader.batches_per_epoch() as u64;
    let total = cfg.optim.epochs as u64 * spe;
    let settings = train::Settings {
        label: "pretrain".into(),
        steps_per_epoch: spe,
        total_steps: total,
        max_steps: cfg.run.max_steps,
        checkpoint_every: cfg.run.checkpoint_every,
        keep_checkpoints: cfg.run.keep_checkpoints,
        log_every: cfg.run.log_every,
    };
    let mut task = Pretraining::new(cfg, mae, selected.device, spe)?;
    task.device_label = selected.label;
    task.dataset = dataset.describe();
    (task.monitor, task.dir) = (monitor, dir.path().to_path_buf());
    let out = train::run(&mut task, &dir, &loader, &settings, control)?;
    Ok(Outcome {
        steps: out.steps,
        interrupted: out.interrupted,
        completed: out.completed,
        run_dir: dir.path().to_path_buf(),
        resumed_from: out.resumed_from,
    })
}

/// A resume must use the stored config up to `run.max_steps`, `run.device`, `data.workers`
/// and the spelling of paths.
fn same_run(cfg: &PretrainConfig, old: &str) -> Result<()> {
    let old: PretrainConfig =
        toml::from_str(old).context("the stored config.toml is unreadable")?;
    let norm = |c: &PretrainConfig| -> Result<toml::Value> {
        let mut c = c.clone();
        c.run.max_steps = 0;
        c.run.device = cfg.run.device;
        c.data.workers = cfg.data.workers;
        c.run.dir = cfg.run.dir.clone();
        if let Ok(abs) = std::fs::canonicalize(&c.data.train) {
            c.data.train = abs;
        }
        Ok(toml::Value::try_from(c)?)
    };
    match crate::refine::run::first_difference(&norm(&old)?, &norm(cfg)?, "") {
        None => Ok(()),
        Some(key) => anyhow::bail!("`{key}` differs from the stored config"),
    }
}

/// MAE's parameter groups: weight decay on matrices only, never on biases, norms, the CLS
/// token, the mask token or positional embeddings; no layer decay.
pub fn group(weight_decay: f64) -> impl Fn(&str, usize) -> Group {
    move |path, ndim| {
        let exempt = path.contains("mask_token") || path.contains("pos_embed");
        Group {
            lr_scale: 1.0,
            weight_decay: if decays(path, ndim) && !exempt {
                weight_decay
            } else {
                0.0
            },
        }
    }
}

/// MAE pre-training as the shared training loop runs it.
pub struct Pretraining {
    pub cfg: PretrainConfig,
    pub mae: MaeConfig,
    device: Device,
    model: Option<Mae>,
    opt: AdamW,
    schedule: Schedule,
    spe: u64,
    step: u64,
    device_label: String,
    dataset: String,
    monitor: Option<Monitor>,
    dir: PathBuf,
}

impl Pretraining {
    /// A fresh model (seeded from `run.seed`) and optimizer for `spe` batches per epoch.
    pub fn new(cfg: PretrainConfig, mae: MaeConfig, device: Device, spe: u64) -> Result<Self> {
        let model = Mae::init(&mae, &device.clone().autodiff(), cfg.run.seed)?.train();
        let mut opt = AdamW::new();
        [opt.beta1, opt.beta2] = cfg.optim.betas;
        let o = &cfg.optim;
        let schedule = Schedule {
            peak: scaled_lr(o.base_lr, cfg.data.batch_size),
            floor: o.min_lr,
            warmup_steps: (o.warmup_epochs * spe as f64).round() as u64,
            total_steps: o.epochs as u64 * spe,
        };
        Ok(Self {
            cfg,
            mae,
            device,
            model: Some(model),
            opt,
            schedule,
            spe,
            step: 0,
            device_label: String::new(),
            dataset: String::new(),
            monitor: None,
            dir: PathBuf::new(),
        })
    }

    /// Checks a checkpoint's state against this (freshly built) task before anything is built
    /// from it: `state.json`'s step against `progress.json`'s `step`; every tensor of the MAE
    /// (encoder and decoder) under `model.` with exactly the shape of this model's own, the
    /// optimizer's moments against the parameters, no tensor unexpected, every value finite.
    fn check(&self, folder: &Path, state: &State, map: &TensorMap, step: u64) -> Result<()> {
        let mut c = Check::new(folder, STATE_FILE);
        c.ensure(state.step == step, || {
            format!("`step` is {}, progress.json says {step}", state.step)
        });
        c.done()?;
        let model = self.model()?;
        let mut want = Shapes::new();
        shapes(&model.to_tensors()?, "model.", &mut want);
        let mut c = Check::new(folder, TENSORS_FILE);
        c.tensors(map, &want, &["opt."]);
        c.optimizer(map, "opt.", model, Some(&state.opt_steps), state.step);
        c.finite(map);
        c.done()
    }

    /// Online evaluation and reconstructions of the model as it is now (when `[eval]` is on).
    fn monitor(&self, log: &mut RunLog) -> Result<()> {
        let Some(m) = &self.monitor else {
            return Ok(());
        };
        let model = self.model()?.valid();
        let at = (self.step, self.step as f64 / self.spe as f64);
        m.run((&model, &self.mae), at, &self.device, &self.dir, log)
    }

    fn model(&self) -> Result<&Mae> {
        self.model
            .as_ref()
            .context("model missing after a failed step")
    }

    /// One update at learning rate `lr`; returns the loss.
    fn update(&mut self, batch: &Batch, lr: f64) -> Result<f64> {
        let db = batch.to_device(&self.device.clone().autodiff());
        let mut rng = Rng::keyed(&[self.cfg.run.seed, MASK_KEY, self.step]);
        let (n, l) = (db.globals.dims()[0], self.mae.num_patches());
        let masking = random_masking(n, l, self.mae.mask_ratio, &mut rng)?;
        let out = self.model()?.forward(db.globals, &masking)?;
        let loss = out.loss.clone().into_scalar::<f32>() as f64;
        let mut grads = GradientsParams::from_grads(out.loss.backward(), self.model()?);
        let model = self.model.take().context("model missing")?;
        let g = group(self.cfg.optim.weight_decay);
        self.model = Some(self.opt.update(model, &mut grads, lr, "", &g));
        self.step += 1;
        Ok(loss)
    }
}

impl Task for Pretraining {
    fn header(&self) -> runlog::Header {
        runlog::Header {
            version: runlog::VERSION,
            minor: runlog::MINOR,
            kind: runlog::RunKind::Pretrain,
            config: serde_json::to_value(&self.cfg).unwrap_or_default(),
            heads: Vec::new(),
            dataset: self.dataset.clone(),
            device: self.device_label.clone(),
            encoder: serde_json::to_value(&self.mae.encoder).unwrap_or_default(),
        }
    }

    fn step(&mut self, batch: &Batch, step: u64) -> Result<StepReport> {
        ensure!(
            self.step == step,
            "internal: pre-training at step {} asked for step {step}",
            self.step
        );
        let lr = self.schedule.lr(step);
        let loss = self.update(batch, lr)?;
        let event = Event::PretrainStep(PretrainStep {
            step: step + 1,
            epoch: step / self.spe,
            lr,
            img_per_s: 0.0,
            time: None,
            loss,
        });
        Ok(StepReport {
            loss,
            events: vec![event],
            status: format!("loss {loss:.4}"),
        })
    }

    fn on_fresh_start(&mut self, _dir: &Path, log: &mut RunLog) -> Result<()> {
        self.monitor(log)
    }

    fn after_step(&mut self, step: u64, end: u64, log: &mut RunLog) -> Result<()> {
        match &self.monitor {
            Some(m) if m.due(step, self.spe, end) => self.monitor(log),
            _ => Ok(()),
        }
    }

    fn checkpoint_due(&self, _step: u64) -> bool {
        false
    }

    fn save(&self, folder: &Path) -> Result<()> {
        let mut map = TensorMap::new();
        prefixed(self.model()?.to_tensors()?, "model.", &mut map);
        prefixed(self.opt.state()?, "opt.", &mut map);
        let state = State {
            step: self.step,
            opt_steps: self.opt.steps(),
        };
        state_file::write(folder, &map, &state)
    }

    fn restore(&mut self, folder: &Path, step: u64) -> Result<()> {
        let (state, map): (State, TensorMap) = state_file::read(folder)?;
        self.check(folder, &state, &map, step)?;
        let ad = self.device.clone().autodiff();
        let model = Mae::from_tensors(&self.mae, &strip(&map, "model."), &ad)
            .with_context(|| format!("{}: model", folder.display()))?
            .train();
        let mut opt = AdamW::new();
        [opt.beta1, opt.beta2] = self.cfg.optim.betas;
        let steps = SavedSteps::PerParameter(&state.opt_steps);
        opt.load_state(&strip(&map, "opt."), steps, &self.device)
            .and_then(|()| opt.check_against(&param_values(&model)))
            .with_context(|| format!("{}: optimizer state", folder.display()))?;
        (self.model, self.opt, self.step) = (Some(model), opt, state.step);
        Ok(())
    }

    fn finish(&mut self, dir: &Path, _log: &mut RunLog, _completed: bool) -> Result<()> {
        export_encoder(self.model()?, &self.mae, &dir.join(ENCODER_FILE))
    }
}

/// Writes the MAE's encoder as an importable checkpoint (timm names, `mimr export` format).
pub fn export_encoder(model: &Mae, mae: &MaeConfig, path: &Path) -> Result<()> {
    crate::checkpoint::export_encoder(&mae.encoder, model.encoder.to_tensors()?, "pretrain", path)
}
