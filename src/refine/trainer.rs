//! One MIM-Refiner training step (method.md §3–§4): encoder passes over global and local views,
//! per-head NN lookup, NNA loss summed over heads, AdamW with layer decay, encoder EMA.

use super::config::RefineConfig;
use super::groups::Groups;
use super::heads::{Head, HeadSize};
use super::loss::head_loss;
use super::optim::{AdamW, ema_update, param_values};
use super::queue::{NnQueue, l2n};
use crate::data::Batch;
use crate::dist::{Comm, Single};
use crate::model::vit::{Taps, Vit, VitConfig, VitOutput, pool};
use crate::rng::Rng;
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The trainable part: encoder and heads (one module so one optimizer pass sees both).
#[derive(Module, Debug)]
pub struct Refiner {
    pub encoder: Vit,
    pub heads: Vec<Head>,
}

/// Where a head reads its features (method.md §1.3).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadSpec {
    /// `main` or `cls<block>` (0-indexed block).
    pub name: String,
    /// `None` = the encoder output (after the final norm for pre-norm models).
    pub block: Option<usize>,
}

/// Heads for `cfg`: the listed blocks, or the last third of the encoder, plus `main`.
pub fn head_specs(cfg: &RefineConfig, depth: usize) -> Result<Vec<HeadSpec>> {
    let mut blocks = cfg.heads.blocks.clone();
    if blocks.is_empty() {
        let start = depth - (depth / 3).max(1);
        blocks = (start..depth - usize::from(cfg.heads.main)).rev().collect();
    }
    let mut specs = Vec::new();
    if cfg.heads.main {
        specs.push(HeadSpec {
            name: "main".into(),
            block: None,
        });
    }
    for b in blocks {
        anyhow::ensure!(
            b < depth,
            "heads.blocks: block {b} does not exist (the encoder has blocks 0..={})",
            depth - 1
        );
        specs.push(HeadSpec {
            name: format!("cls{b}"),
            block: Some(b),
        });
    }
    anyhow::ensure!(
        !specs.is_empty(),
        "no heads: set heads.main = true or list heads.blocks"
    );
    Ok(specs)
}

/// Per-head statistics of one step (method.md §3 item 7).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HeadStats {
    pub loss: f64,
    pub nn_similarity: f64,
    pub nn_accuracy: Option<f64>,
    pub global_alignment: f64,
    pub local_alignment: f64,
    /// (sample index, neighbour's sample index, same label) for the first samples of view 0.
    #[serde(skip)]
    pub examples: Vec<(usize, i64, Option<bool>)>,
}

/// The dataset indices and labels of a whole step's batch (all ranks' shares, in rank order).
pub struct Samples {
    pub indices: Vec<usize>,
    pub labels: Vec<i64>,
}

impl Samples {
    /// A single process's batch.
    pub fn of(batch: &Batch) -> Self {
        Self {
            indices: batch.indices.clone(),
            labels: batch.labels.clone(),
        }
    }

    /// Every rank's share, gathered.
    pub fn gather(comm: &dyn Comm, batch: &Batch) -> Self {
        let (indices, labels) =
            crate::dist::rows::gather_samples(comm, &batch.indices, &batch.labels);
        Self { indices, labels }
    }
}

/// Keys of the random streams that initialise heads and queues (with the seed and head index).
const HEAD_INIT: u64 = 0x4845_4144;
const QUEUE_INIT: u64 = 0x5155_4555;

/// All mutable training state.
pub struct Trainer {
    pub cfg: RefineConfig,
    pub vit: VitConfig,
    pub device: Device,
    pub model: Option<Refiner>,
    pub ema: Vit,
    pub specs: Vec<HeadSpec>,
    pub queues: Vec<NnQueue>,
    pub opt: AdamW,
    /// The stage whose updates `opt` holds (a fresh trainer: 2).
    pub opt_stage: u8,
    pub step: u64,
    /// The ranks this trainer steps with ([`crate::dist::Single`] unless data-parallel).
    pub comm: Arc<dyn Comm>,
    /// Time spent in collectives and their host copies, and in whole steps (data-parallel steps).
    pub comm_time: Duration,
    pub step_time: Duration,
}

impl Trainer {
    /// Fresh heads and queues around a loaded encoder; everything seeded from `cfg.run.seed`.
    pub fn new(
        cfg: RefineConfig,
        vit: VitConfig,
        encoder_tensors: &crate::host::TensorMap,
        device: Device,
    ) -> Result<Self> {
        let ad = device.clone().autodiff();
        let encoder = Vit::from_tensors(&vit, encoder_tensors, &ad)?;
        let specs = head_specs(&cfg, vit.depth)?;
        let mut size = HeadSize::preset(cfg.heads.size);
        if let Some(q) = cfg.heads.queue_size {
            size.queue_size = q;
        }
        let heads = specs
            .iter()
            .enumerate()
            .map(|(h, _)| {
                Head::new(
                    vit.dim,
                    &size,
                    &mut Rng::keyed(&[cfg.run.seed, HEAD_INIT, h as u64]),
                    &ad,
                )
            })
            .collect();
        let queues = specs
            .iter()
            .enumerate()
            .map(|(h, _)| {
                let mut rng = Rng::keyed(&[cfg.run.seed, QUEUE_INIT, h as u64]);
                NnQueue::new(size.queue_size, size.out_dim, &mut rng, &device)
            })
            .collect();
        let ema = encoder.valid();
        Ok(Self {
            cfg,
            vit,
            device,
            model: Some(Refiner { encoder, heads }.train()),
            ema,
            specs,
            queues,
            opt: AdamW::new(),
            opt_stage: 2,
            step: 0,
            comm: Arc::new(Single),
            comm_time: Duration::ZERO,
            step_time: Duration::ZERO,
        })
    }

    /// Steps data-parallel with the ranks of `comm` (every rank builds the same trainer).
    pub fn with_comm(mut self, comm: Arc<dyn Comm>) -> Self {
        self.comm = comm;
        self
    }

    pub(super) fn model(&self) -> Result<&Refiner> {
        self.model
            .as_ref()
            .context("model missing after a failed step")
    }

    /// Forward of every head's features: `[V·B, D]` per head, view-major (globals, then locals).
    pub(super) fn features(&self, batch: &Batch, stage3: bool) -> Result<Vec<Tensor<2>>> {
        let ad = self.device.clone().autodiff();
        let dev = if stage3 {
            ad.clone()
        } else {
            self.device.clone()
        };
        let db = batch.to_device(&dev);
        let taps = Taps {
            blocks: self.specs.iter().filter_map(|s| s.block).collect(),
            final_output: self.specs.iter().any(|s| s.block.is_none()),
        };
        let frozen;
        let enc = if stage3 {
            &self.model()?.encoder
        } else {
            frozen = self.model()?.encoder.valid();
            &frozen
        };
        let outs: Vec<VitOutput> = std::iter::once(enc.forward(db.globals, &taps))
            .chain(db.locals.map(|l| enc.forward(l, &taps)))
            .collect();
        let how = self.cfg.heads.pool;
        self.specs
            .iter()
            .map(|s| {
                let parts = outs
                    .iter()
                    .map(|o| {
                        o.tap(s.block)
                            .map(|t| pool(t, how))
                            .context("tapped block missing")
                    })
                    .collect::<Result<Vec<_>>>()?;
                let x = Tensor::cat(parts, 0);
                Ok(if stage3 { x } else { x.autodiff() })
            })
            .collect()
    }

    /// One optimisation step at learning rate `lr` (peak-scaled, before group scales). With
    /// several ranks, `batch` is this rank's share of the step's batch (see [`Trainer::comm`]).
    pub fn step(&mut self, batch: &Batch, stage: u8, lr: f64) -> Result<Vec<HeadStats>> {
        let stage3 = stage == 3;
        let t_step = Instant::now();
        let local = self.features(batch, stage3)?;
        if self.comm.size() == 1 {
            let whole = Samples::of(batch);
            let (total, stats) = self.losses(local, &whole, stage)?;
            let grads = GradientsParams::from_grads(total.backward(), self.model()?);
            self.update(grads, stage, lr)?;
            return Ok(stats);
        }
        let t0 = Instant::now();
        let whole = Samples::gather(&*self.comm, batch);
        let layout = self.layout(batch.len(), &local)?;
        let gathered = self.gather(&local, &layout, stage3)?;
        self.comm_time += t0.elapsed();
        let (total, stats) = self.losses(gathered.clone(), &whole, stage)?;
        let grads = self.ranked_grads(total, local, &gathered, &layout, stage3)?;
        self.update(grads, stage, lr)?;
        self.step_time += t_step.elapsed();
        Ok(stats)
    }

    /// Every head's summed loss over the whole batch `whole` (this process's `feats` rows),
    /// with the NN lookups, the queue update and each head's statistics.
    fn losses(
        &mut self,
        feats: Vec<Tensor<2>>,
        whole: &Samples,
        stage: u8,
    ) -> Result<(Tensor<1>, Vec<HeadStats>)> {
        let sc = if stage == 3 {
            &self.cfg.stage3
        } else {
            &self.cfg.stage2
        };
        let (topk, n_global, n_local) = (
            sc.topk,
            self.cfg.data.views.globals.len(),
            self.cfg.data.views.n_local,
        );
        let b = whole.indices.len();
        let mut total: Option<Tensor<1>> = None;
        let mut stats = Vec::new();
        for (h, x) in feats.into_iter().enumerate() {
            let (z, p) = self.model()?.heads[h].forward(x);
            let mut rng = Rng::keyed(&[self.cfg.run.seed, self.step, h as u64]);
            let mut st = HeadStats::default();
            let mut nns = Vec::new();
            let (mut agree, mut labelled) = (0usize, 0usize);
            for v in 0..n_global {
                let zv = z.clone().narrow(0, v * b, b);
                let look = self.queues[h].lookup(zv.clone(), &whole.indices, topk, &mut rng)?;
                let cos = (l2n(zv.without_autodiff().detach()) * look.nn.clone())
                    .sum_dim(1)
                    .mean();
                st.nn_similarity += cos.into_scalar::<f32>() as f64 / n_global as f64;
                for (i, &pick) in look.picks.iter().enumerate() {
                    let (mine, theirs) = (whole.labels[i], self.queues[h].label[pick]);
                    if mine >= 0 && theirs >= 0 {
                        labelled += 1;
                        agree += usize::from(mine == theirs);
                    }
                    if v == 0 && i < 8 {
                        let same = (mine >= 0 && theirs >= 0).then_some(mine == theirs);
                        st.examples
                            .push((whole.indices[i], self.queues[h].idx[pick], same));
                    }
                }
                nns.push(look.nn);
            }
            st.nn_accuracy = (labelled > 0).then(|| agree as f64 / labelled as f64);
            let hl = head_loss(
                &z,
                &p,
                &nns,
                n_local,
                self.cfg.heads.temperature,
                self.cfg.heads.loss,
            );
            self.queues[h].enqueue(z.narrow(0, 0, b), &whole.indices, &whole.labels);
            st.loss = hl.loss.clone().into_scalar::<f32>() as f64;
            st.global_alignment = hl.global_alignment;
            st.local_alignment = hl.local_alignment;
            stats.push(st);
            total = Some(match total {
                Some(t) => t + hl.loss,
                None => hl.loss,
            });
        }
        let total = total.context("no heads")?;
        let value = total.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            bail!(
                "loss became {value} at step {} (stage {stage}): stopping; the last good checkpoint is kept. Lower the learning rate or check the data",
                self.step
            );
        }
        Ok((total, stats))
    }

    /// The parameter groups of `stage` (2 or 3) for this run's config and encoder.
    pub fn groups(&self, stage: u8) -> Groups {
        let sc = if stage == 3 {
            &self.cfg.stage3
        } else {
            &self.cfg.stage2
        };
        Groups::new(stage, sc, self.vit.depth)
    }

    /// One optimizer update of stage `stage` with `grads` (by parameter id, on the inner
    /// device), then the encoder EMA and the step counter. The first update of a stage other
    /// than the optimizer's starts a fresh AdamW (moments and steps reset), as the reference
    /// starts stage 3 as a new run (method.md §4.2); heads, queues and BN statistics carry over.
    pub fn update(&mut self, mut grads: GradientsParams, stage: u8, lr: f64) -> Result<()> {
        if stage != self.opt_stage {
            self.opt = AdamW::new();
            self.opt_stage = stage;
        }
        let groups = self.groups(stage);
        let model = self.model.take().context("model missing")?;
        let model = self
            .opt
            .update(model, &mut grads, lr, "", &|p, d| groups.of(p, d));
        if stage == 3 {
            let current = param_values(&model.encoder);
            self.ema = ema_update(self.ema.clone(), &current, self.cfg.run.ema_momentum);
        } else {
            self.ema = model.encoder.valid();
        }
        self.model = Some(model);
        self.step += 1;
        Ok(())
    }
}
