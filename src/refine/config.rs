//! The one configuration tree of a refinement run (serde + TOML), with `--set key=value`
//! overrides and validation that names the key and its allowed range before any work starts.

use super::heads::HeadPreset;
use crate::data::{MultiCropConfig, Split};
use crate::model::vit::Pool;
use crate::refine::loss::LossVariant;
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A full `mimr refine` configuration (method.md §4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefineConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub heads: HeadsConfig,
    pub stage2: StageConfig,
    pub stage3: StageConfig,
    pub run: RunConfig,
    /// Online evaluation during the run (method.md §5 protocols on a fixed labelled subset);
    /// off when the section is absent.
    #[serde(default)]
    pub eval: OnlineEvalConfig,
}

/// Online evaluation inside `mimr refine`: the EMA encoder's features at every head's block are
/// scored with the §5 protocols at the start, every `every_epochs` epochs and at the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineEvalConfig {
    /// Evaluate every N epochs (plus the start and the end); 0 turns online evaluation off.
    #[serde(default = "one_u64")]
    pub every_epochs: u64,
    #[serde(default = "default_protocols")]
    pub protocols: Vec<crate::eval::protocols::Protocol>,
    /// Split of `data.train`'s dataset that supplies the queries (`test` or `train`).
    #[serde(default = "default_eval_split")]
    pub split: Split,
    /// Bank / training samples, spread evenly over the training split.
    #[serde(default = "default_eval_train")]
    pub train_size: usize,
    /// Query samples, spread evenly over `split` (disjoint from the bank when it is `train`).
    #[serde(default = "default_eval_test")]
    pub test_size: usize,
    /// kNN neighbour counts (§5.1).
    #[serde(default = "default_eval_ks")]
    pub knn_k: Vec<usize>,
    /// Linear-probe epochs when `probe` is among the protocols (§5.2 uses 50).
    #[serde(default = "default_probe_epochs")]
    pub probe_epochs: usize,
    /// `ema` (the encoder the paper evaluates) or `live` (the one being trained: in short runs
    /// whose EMA barely moves, it shows what training does).
    #[serde(default)]
    pub encoder: crate::runlog::Encoder,
}

impl Default for OnlineEvalConfig {
    /// A config without an `[eval]` section: online evaluation off (a section turns it on).
    fn default() -> Self {
        Self {
            every_epochs: 0,
            protocols: default_protocols(),
            split: default_eval_split(),
            train_size: default_eval_train(),
            test_size: default_eval_test(),
            knn_k: default_eval_ks(),
            probe_epochs: default_probe_epochs(),
            encoder: Default::default(),
        }
    }
}

pub(crate) fn default_protocols() -> Vec<crate::eval::protocols::Protocol> {
    vec![crate::eval::protocols::Protocol::Knn]
}
pub(crate) fn default_eval_split() -> Split {
    Split::Test
}
pub(crate) fn default_eval_train() -> usize {
    5000
}
pub(crate) fn default_eval_test() -> usize {
    1000
}
pub(crate) fn default_eval_ks() -> Vec<usize> {
    vec![10, 20]
}
pub(crate) fn default_probe_epochs() -> usize {
    10
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Encoder checkpoint (.pth/.pt/.th/.safetensors), relative to the config file.
    pub checkpoint: PathBuf,
    /// Attention heads when the file does not say.
    #[serde(default)]
    pub attention_heads: Option<usize>,
    /// Positional-embedding resize for other view sizes: `bicubic` (the reference's) or
    /// `bicubic-antialias` (timm's); absent = by checkpoint family (method.md §1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_interp: Option<crate::model::pos_embed::PosInterp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training images (image folder, CIFAR batches, IDX), relative to the config file.
    pub train: PathBuf,
    #[serde(default = "default_split")]
    pub split: Split,
    pub batch_size: usize,
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Use only this many samples, spread evenly over the dataset (quick runs, tests).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Multi-crop views (method.md §4.1).
    pub views: MultiCropConfig,
}

impl DataConfig {
    /// The training subset (`limit`) of `full` and its deterministic multi-crop loader: the one
    /// data path of `mimr refine` and `mimr pretrain`.
    pub fn loader(
        &self,
        full: Arc<dyn crate::data::Dataset>,
        seed: u64,
    ) -> Result<(Arc<dyn crate::data::Dataset>, crate::data::Loader)> {
        let dataset: Arc<dyn crate::data::Dataset> = match self.limit {
            Some(limit) => Arc::new(crate::data::subset::Subset::new(full, limit)),
            None => full,
        };
        let loader = crate::data::Loader::new(
            dataset.clone(),
            self.views.clone(),
            self.batch_size,
            seed,
            self.workers,
            4,
        )?;
        Ok((dataset, loader))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadsConfig {
    /// 0-indexed blocks with a head on their raw CLS token; empty = the last third (method.md §1.3).
    #[serde(default)]
    pub blocks: Vec<usize>,
    /// Add the `main` head on the encoder output (after the final norm of pre-norm models).
    #[serde(default = "yes")]
    pub main: bool,
    /// base | tiny | micro | debug (method.md §2).
    pub size: HeadPreset,
    /// Queue length override.
    #[serde(default)]
    pub queue_size: Option<usize>,
    pub temperature: f64,
    #[serde(default = "default_variant")]
    pub loss: LossVariant,
    /// cls or mean pooling of the block tokens (method.md §1.4).
    #[serde(default = "default_pool")]
    pub pool: Pool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub epochs: usize,
    /// LR per 256 samples (method.md §4.2).
    pub base_lr: f64,
    #[serde(default = "default_min_lr")]
    pub min_lr: f64,
    pub warmup_epochs: f64,
    pub head_weight_decay: f64,
    #[serde(default)]
    pub encoder_weight_decay: f64,
    /// Layer-wise LR decay γ (method.md §1.5); 1 = none.
    #[serde(default = "one")]
    pub layer_decay: f64,
    pub topk: usize,
    /// Freeze the first N blocks (and the stem) in stage 3.
    #[serde(default)]
    pub freeze_blocks: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run directory, relative to the config file.
    pub dir: PathBuf,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: crate::device::DeviceChoice,
    #[serde(default = "default_ema")]
    pub ema_momentum: f64,
    /// Write a checkpoint every N steps (and at every stage end).
    pub checkpoint_every: u64,
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Log scalars every N steps.
    #[serde(default = "one_u64")]
    pub log_every: u64,
    /// Probe-subset embedding snapshots every N steps (0 = only at the end of stage 2 and at
    /// the last step, where they are always written).
    #[serde(default)]
    pub snapshot_every: u64,
    /// Size of the fixed probe subset used for snapshots.
    #[serde(default = "default_probe")]
    pub probe_size: usize,
    /// Which features a snapshot holds: `heads` (each head's block, the default) or `all`
    /// (also every encoder block's raw output, tensors `block.<i>`).
    #[serde(default)]
    pub snapshot_blocks: SnapshotBlocks,
    /// Stop after this many steps in total (for tests and smoke runs; 0 = no limit).
    #[serde(default)]
    pub max_steps: u64,
}

/// The features of a snapshot (`run.snapshot_blocks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotBlocks {
    /// One tensor per head, named by the head (`cls0`, `main`, …).
    #[default]
    Heads,
    /// The head tensors plus `block.<i>`: every encoder block's raw output, pooled as the heads.
    All,
}

fn default_split() -> Split {
    Split::Train
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
fn yes() -> bool {
    true
}
fn default_variant() -> LossVariant {
    LossVariant::Nna
}
fn default_pool() -> Pool {
    Pool::Cls
}
fn default_min_lr() -> f64 {
    1e-6
}
fn one() -> f64 {
    1.0
}
pub(crate) fn one_u64() -> u64 {
    1
}
fn default_device() -> crate::device::DeviceChoice {
    crate::device::DeviceChoice::Auto
}
fn default_ema() -> f64 {
    0.9999
}
fn default_keep() -> usize {
    3
}
fn default_probe() -> usize {
    256
}

impl ModelConfig {
    /// Loads the encoder checkpoint with `attention_heads` and `pos_interp` applied.
    pub fn load(&self) -> Result<crate::checkpoint::Checkpoint> {
        let ck = crate::checkpoint::load(&self.checkpoint, self.attention_heads)?;
        Ok(ck.with_pos_interp(self.pos_interp))
    }
}

impl RefineConfig {
    /// Reads `path`, applies `key=value` overrides, resolves relative paths against the file's
    /// folder, and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let mut cfg: RefineConfig = load_as(path, overrides, "refine")?;
        resolve_paths(
            path,
            [
                &mut cfg.model.checkpoint,
                &mut cfg.data.train,
                &mut cfg.run.dir,
            ],
        );
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks every numeric setting; each error names the key and the allowed range.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.data.batch_size >= 2,
            "data.batch_size = {} must be ≥ 2 (the loss contrasts samples within a batch)",
            self.data.batch_size
        );
        ensure!(
            self.heads.temperature > 0.0 && self.heads.temperature <= 10.0,
            "heads.temperature = {} must be in (0, 10]",
            self.heads.temperature
        );
        ensure!(
            self.heads.pool != Pool::ClsMean,
            "heads.pool = \"cls-mean\" is not possible for heads (their input width is the encoder's): use cls or mean"
        );
        for (name, s) in [("stage2", &self.stage2), ("stage3", &self.stage3)] {
            ensure!(
                s.base_lr >= 0.0 && s.base_lr < 1.0,
                "{name}.base_lr = {} must be in [0, 1)",
                s.base_lr
            );
            ensure!(
                s.min_lr >= 0.0 && s.min_lr <= s.base_lr.max(s.min_lr),
                "{name}.min_lr = {} must be ≥ 0",
                s.min_lr
            );
            ensure!(
                s.warmup_epochs >= 0.0,
                "{name}.warmup_epochs = {} must be ≥ 0",
                s.warmup_epochs
            );
            ensure!(
                s.layer_decay > 0.0 && s.layer_decay <= 1.0,
                "{name}.layer_decay = {} must be in (0, 1]",
                s.layer_decay
            );
            ensure!(s.topk >= 1, "{name}.topk = {} must be ≥ 1", s.topk);
            ensure!(
                (0.0..1.0).contains(&s.head_weight_decay),
                "{name}.head_weight_decay = {} must be in [0, 1)",
                s.head_weight_decay
            );
            ensure!(
                (0.0..1.0).contains(&s.encoder_weight_decay),
                "{name}.encoder_weight_decay = {} must be in [0, 1)",
                s.encoder_weight_decay
            );
        }
        ensure!(
            self.stage2.epochs + self.stage3.epochs > 0,
            "stage2.epochs + stage3.epochs must be > 0"
        );
        ensure!(
            (0.0..1.0).contains(&self.run.ema_momentum),
            "run.ema_momentum = {} must be in [0, 1)",
            self.run.ema_momentum
        );
        ensure!(
            self.run.checkpoint_every >= 1,
            "run.checkpoint_every must be ≥ 1"
        );
        ensure!(
            self.run.keep_checkpoints >= 1,
            "run.keep_checkpoints must be ≥ 1"
        );
        ensure!(self.run.log_every >= 1, "run.log_every must be ≥ 1");
        ensure!(
            self.run.probe_size >= 1,
            "run.probe_size must be ≥ 1 (the samples embedded in each snapshot)"
        );
        self.eval.validate()
    }
}

impl OnlineEvalConfig {
    /// Online evaluation runs: a period and at least one protocol.
    pub fn enabled(&self) -> bool {
        self.every_epochs > 0 && !self.protocols.is_empty()
    }

    /// What online evaluation scores (for [`crate::refine::online_eval::score`]).
    pub fn scoring(&self) -> crate::refine::online_eval::Scoring<'_> {
        crate::refine::online_eval::Scoring {
            protocols: &self.protocols,
            knn_k: &self.knn_k,
            probe_epochs: self.probe_epochs,
        }
    }

    /// Checks sizes, `knn_k` and `probe_epochs` when enabled, naming the `eval.` key.
    pub fn validate(&self) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        ensure!(
            self.train_size >= 10,
            "eval.train_size = {} must be ≥ 10 (the kNN bank / probe training set)",
            self.train_size
        );
        ensure!(
            self.test_size >= 10,
            "eval.test_size = {} must be ≥ 10",
            self.test_size
        );
        ensure!(
            !self.knn_k.is_empty() && self.knn_k.iter().all(|&k| k >= 1 && k <= self.train_size),
            "eval.knn_k = {:?} needs values in [1, eval.train_size = {}]",
            self.knn_k,
            self.train_size
        );
        ensure!(
            (1..=1000).contains(&self.probe_epochs),
            "eval.probe_epochs = {} must be in [1, 1000]",
            self.probe_epochs
        );
        Ok(())
    }
}

/// The TOML tree of the config file `path` with `key=value` overrides applied (shared by every
/// config of this crate: refine, pretrain).
/// Reads `path` with `overrides` applied into the config type `T` (`schema` names it in errors).
pub fn load_as<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
    schema: &str,
) -> Result<T> {
    read_tree(path, overrides)?.try_into().with_context(|| {
        format!(
            "{}: does not match the {schema} config schema",
            path.display()
        )
    })
}

/// Makes each relative path of a config absolute against the folder of its file `config_path`.
pub fn resolve_paths<const N: usize>(config_path: &Path, paths: [&mut PathBuf; N]) {
    let base = config_path.parent().unwrap_or(Path::new("."));
    for p in paths {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
}

pub fn read_tree(path: &Path, overrides: &[String]) -> Result<toml::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let mut value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    for o in overrides {
        apply_override(&mut value, o)?;
    }
    Ok(value)
}

/// Applies `a.b.c=value` to a TOML tree; the value is parsed as TOML (number, bool, array,
/// string) and falls back to a plain string.
pub fn apply_override(root: &mut toml::Value, spec: &str) -> Result<()> {
    let Some((key, raw)) = spec.split_once('=') else {
        bail!("--set `{spec}`: expected key=value, e.g. stage3.epochs=5")
    };
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        let table = cur
            .as_table_mut()
            .with_context(|| format!("--set {key}: `{}` is not a table", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            table.insert(part.to_string(), parsed);
            return Ok(());
        }
        cur = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}
