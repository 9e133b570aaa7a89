//! The configuration tree of an MAE pre-training run (serde + TOML): model, data (the refine data
//! section), optimizer and run settings, with `--set key=value` and validation naming the key.

use crate::model::mae::MaeConfig;
use crate::model::vit::VitConfig;
use crate::refine::config::{
    self as refine_cfg, DataConfig, OnlineEvalConfig, load_as, resolve_paths,
};
use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A full `mimr pretrain` configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
    pub run: RunConfig,
    /// Online evaluation of the encoder being trained; absent: off.
    #[serde(default)]
    pub eval: PretrainEvalConfig,
}

/// `[eval]`: kNN (and other §5 protocols) of the encoder's CLS token at every block and after the
/// final norm, on fixed labelled samples, at the start, every `every_epochs` epochs and at the
/// end; each time also `reconstructions` fixed query images with the MAE's reconstruction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainEvalConfig {
    /// Evaluate every N epochs (plus the start and the end); 0 turns it off.
    #[serde(default = "refine_cfg::one_u64")]
    pub every_epochs: u64,
    #[serde(default = "refine_cfg::default_protocols")]
    pub protocols: Vec<crate::eval::protocols::Protocol>,
    /// Split of `data.train`'s dataset that supplies the queries (`test` or `train`).
    #[serde(default = "refine_cfg::default_eval_split")]
    pub split: crate::data::Split,
    /// Bank samples, spread evenly over the training split.
    #[serde(default = "refine_cfg::default_eval_train")]
    pub train_size: usize,
    /// Query samples, spread evenly over `split`.
    #[serde(default = "refine_cfg::default_eval_test")]
    pub test_size: usize,
    #[serde(default = "refine_cfg::default_eval_ks")]
    pub knn_k: Vec<usize>,
    #[serde(default = "refine_cfg::default_probe_epochs")]
    pub probe_epochs: usize,
    /// Query images shown with their reconstruction (`reconstructions/step-N.png`) at each
    /// evaluation; 0: none. Needs the evaluation on (`every_epochs` ≥ 1, a protocol) and, as
    /// it does, a labelled dataset.
    #[serde(default = "default_reconstructions")]
    pub reconstructions: usize,
}

impl Default for PretrainEvalConfig {
    /// A config without an `[eval]` section: off.
    fn default() -> Self {
        Self {
            every_epochs: 0,
            protocols: refine_cfg::default_protocols(),
            split: refine_cfg::default_eval_split(),
            train_size: refine_cfg::default_eval_train(),
            test_size: refine_cfg::default_eval_test(),
            knn_k: refine_cfg::default_eval_ks(),
            probe_epochs: refine_cfg::default_probe_epochs(),
            reconstructions: default_reconstructions(),
        }
    }
}

impl PretrainEvalConfig {
    /// The same settings as refine's online evaluation (of the live encoder: MAE has no EMA).
    pub fn online(&self) -> OnlineEvalConfig {
        OnlineEvalConfig {
            every_epochs: self.every_epochs,
            protocols: self.protocols.clone(),
            split: self.split,
            train_size: self.train_size,
            test_size: self.test_size,
            knn_k: self.knn_k.clone(),
            probe_epochs: self.probe_epochs,
            encoder: crate::runlog::Encoder::Live,
        }
    }
}

fn default_reconstructions() -> usize {
    8
}

/// The MAE: an encoder preset or explicit encoder sizes, plus the decoder and masking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A ViT preset (`debug`, `tiny`, `small`, `base`, …); explicit sizes below override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Image side in pixels (= `data.views.globals[0].size`).
    pub img_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
    #[serde(default = "default_mask_ratio")]
    pub mask_ratio: f64,
    #[serde(default = "yes")]
    pub norm_pix_loss: bool,
}

/// AdamW with MAE's settings; LR = `base_lr · batch_size / 256`, warmup then cosine per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub epochs: usize,
    pub warmup_epochs: f64,
    pub base_lr: f64,
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
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
    #[serde(default = "one")]
    pub log_every: u64,
    pub checkpoint_every: u64,
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Stop after this many steps in total (tests, smoke runs; 0 = no limit).
    #[serde(default)]
    pub max_steps: u64,
}

fn default_mask_ratio() -> f64 {
    0.75
}
fn yes() -> bool {
    true
}
fn default_wd() -> f64 {
    0.05
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.95]
}
fn default_device() -> crate::device::DeviceChoice {
    crate::device::DeviceChoice::Auto
}
fn one() -> u64 {
    1
}
fn default_keep() -> usize {
    3
}

impl ModelConfig {
    /// The MAE architecture: the preset (if any) with explicit sizes applied.
    pub fn mae(&self) -> Result<MaeConfig> {
        let mut e = match &self.preset {
            Some(name) => VitConfig::preset(name, self.img_size).context("model.preset")?,
            None => VitConfig::prenorm(
                need(self.patch_size, "model.patch_size")?,
                need(self.dim, "model.dim")?,
                need(self.depth, "model.depth")?,
                need(self.heads, "model.heads")?,
                self.img_size,
            ),
        };
        if let Some(p) = self.patch_size {
            ensure!(p > 0, "model.patch_size must be > 0");
            e.patch_size = p;
            e.grid = [self.img_size / p, self.img_size / p];
        }
        if let Some(d) = self.dim {
            (e.dim, e.mlp_hidden) = (d, 4 * d);
        }
        e.depth = self.depth.unwrap_or(e.depth);
        e.heads = self.heads.unwrap_or(e.heads);
        Ok(MaeConfig {
            encoder: e,
            decoder_dim: self.decoder_dim,
            decoder_depth: self.decoder_depth,
            decoder_heads: self.decoder_heads,
            mask_ratio: self.mask_ratio,
            norm_pix_loss: self.norm_pix_loss,
        })
    }
}

fn need(v: Option<usize>, key: &str) -> Result<usize> {
    v.with_context(|| format!("{key} is required when model.preset is not given"))
}

impl PretrainConfig {
    /// Reads `path`, applies `key=value` overrides, resolves relative paths against the file's
    /// folder, and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let mut cfg: PretrainConfig = load_as(path, overrides, "pretrain")?;
        resolve_paths(path, [&mut cfg.data.train, &mut cfg.run.dir]);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks every setting; each error names the key and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        let mae = m.mae()?;
        mae.validate().context("model")?;
        ensure!(
            m.img_size.is_multiple_of(mae.encoder.patch_size),
            "model.img_size = {} is not a multiple of the patch size {}",
            m.img_size,
            mae.encoder.patch_size
        );
        self.validate_data()?;
        self.validate_optim()?;
        let r = &self.run;
        ensure!(r.checkpoint_every >= 1, "run.checkpoint_every must be ≥ 1");
        ensure!(r.keep_checkpoints >= 1, "run.keep_checkpoints must be ≥ 1");
        ensure!(r.log_every >= 1, "run.log_every must be ≥ 1");
        ensure!(
            self.eval.reconstructions <= 64,
            "eval.reconstructions = {} must be ≤ 64",
            self.eval.reconstructions
        );
        self.eval.online().validate()
    }

    fn validate_data(&self) -> Result<()> {
        let v = &self.data.views;
        ensure!(self.data.batch_size >= 1, "data.batch_size must be ≥ 1");
        ensure!(
            v.globals.len() == 1 && v.n_local == 0,
            "data.views: MAE uses one view per image: give exactly one [[data.views.globals]] and n_local = 0 (have {} globals, n_local = {})",
            v.globals.len(),
            v.n_local
        );
        ensure!(
            v.global_size() == self.model.img_size,
            "data.views.globals[0].size = {} differs from model.img_size = {}",
            v.global_size(),
            self.model.img_size
        );
        v.validate(self.model.mae()?.encoder.patch_size)
            .context("data.views")
    }

    fn validate_optim(&self) -> Result<()> {
        let o = &self.optim;
        ensure!(o.epochs >= 1, "optim.epochs = {} must be ≥ 1", o.epochs);
        ensure!(
            o.base_lr > 0.0 && o.base_lr < 1.0,
            "optim.base_lr = {} must be in (0, 1)",
            o.base_lr
        );
        ensure!(
            o.min_lr >= 0.0 && o.min_lr <= o.base_lr,
            "optim.min_lr = {} must be in [0, optim.base_lr]",
            o.min_lr
        );
        ensure!(
            o.warmup_epochs >= 0.0 && o.warmup_epochs <= o.epochs as f64,
            "optim.warmup_epochs = {} must be in [0, optim.epochs]",
            o.warmup_epochs
        );
        ensure!(
            (0.0..1.0).contains(&o.weight_decay),
            "optim.weight_decay = {} must be in [0, 1)",
            o.weight_decay
        );
        for (i, b) in o.betas.iter().enumerate() {
            ensure!(
                (0.0..1.0).contains(b),
                "optim.betas[{i}] = {b} must be in [0, 1)"
            );
        }
        Ok(())
    }
}
