//! Instance-discrimination heads (method.md §2): a bias-free 3-layer projector and 2-layer
//! predictor, each Linear followed by BatchNorm over all views of the batch, GELU between.

use crate::host::{HostTensor, TensorMap, host};
use crate::rng::Rng;
use anyhow::{Context, Result};
use burn::module::{Module, Param, RunningState};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData, activation};
use serde::{Deserialize, Serialize};

/// Head sizes (method.md §2, `nnclr.yaml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSize {
    pub proj_hidden: usize,
    pub pred_hidden: usize,
    pub out_dim: usize,
    pub queue_size: usize,
}

/// The head size presets of method.md §2 (`heads.size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadPreset {
    /// The paper's heads.
    Base,
    Tiny,
    Micro,
    /// Tests and smoke runs.
    Debug,
}

impl HeadSize {
    /// The sizes of a preset.
    pub fn preset(p: HeadPreset) -> Self {
        let (queue_size, proj_hidden, pred_hidden, out_dim) = match p {
            HeadPreset::Base => (65536, 2048, 4096, 256),
            HeadPreset::Tiny => (65536, 1024, 2048, 128),
            HeadPreset::Micro => (16384, 256, 512, 128),
            HeadPreset::Debug => (2048, 16, 32, 4),
        };
        Self {
            proj_hidden,
            pred_hidden,
            out_dim,
            queue_size,
        }
    }
}

/// BatchNorm1d with PyTorch semantics (method.md §2): batch statistics over all rows while
/// training, biased variance to normalise, unbiased variance in the running estimate.
#[derive(Module, Debug)]
pub struct BatchNorm1d {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    pub momentum: f64,
    pub eps: f64,
}

impl BatchNorm1d {
    fn new(n: usize, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([n], device)),
            beta: Param::from_tensor(Tensor::zeros([n], device)),
            running_mean: RunningState::new(Tensor::zeros([n], &device.clone().inner())),
            running_var: RunningState::new(Tensor::ones([n], &device.clone().inner())),
            momentum: 0.1,
            eps: 1e-5,
        }
    }

    /// `x [N, C]`: batch statistics on an autodiff device, running statistics otherwise.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, c] = x.dims();
        let (mean, var) = if x.device().is_autodiff() {
            let mean = x.clone().mean_dim(0);
            let var = (x.clone() - mean.clone()).powi_scalar(2).mean_dim(0);
            let m = self.momentum;
            let unbiased = var
                .clone()
                .detach()
                .inner()
                .mul_scalar(n as f64 / (n.max(2) - 1) as f64)
                .reshape([c]);
            let rm = self.running_mean.value_sync().mul_scalar(1.0 - m)
                + mean.clone().detach().inner().reshape([c]).mul_scalar(m);
            let rv = self.running_var.value_sync().mul_scalar(1.0 - m) + unbiased.mul_scalar(m);
            self.running_mean.update(rm);
            self.running_var.update(rv);
            (mean, var)
        } else {
            let d = x.device();
            (
                self.running_mean.value().to_device(&d).reshape([1, c]),
                self.running_var.value().to_device(&d).reshape([1, c]),
            )
        };
        let xhat = (x - mean) / var.add_scalar(self.eps).sqrt();
        xhat * self.gamma.val().reshape([1, c]) + self.beta.val().reshape([1, c])
    }
}

/// Linear (no bias) followed by BatchNorm1d.
#[derive(Module, Debug)]
pub struct LinearBn {
    pub linear: Linear,
    pub bn: BatchNorm1d,
}

impl LinearBn {
    /// Xavier-uniform weights (method.md §2) drawn from `rng` (not the backend's global
    /// generator, so a run's init never depends on what else the process does); BN weight 1,
    /// bias 0.
    fn new(d_in: usize, d_out: usize, rng: &mut Rng, device: &Device) -> Self {
        let a = (6.0 / (d_in + d_out) as f64).sqrt();
        let w: Vec<f32> = (0..d_in * d_out).map(|_| rng.range(-a, a) as f32).collect();
        Self::with_weight(Tensor::from_data(TensorData::new(w, [d_in, d_out]), device))
    }

    /// A layer with the given `[in, out]` weight; BN weight 1, bias 0.
    fn with_weight(w: Tensor<2>) -> Self {
        let ([d_in, d_out], device) = (w.dims(), w.device());
        let mut linear = LinearConfig::new(d_in, d_out)
            .with_bias(false)
            .with_initializer(burn::nn::Initializer::Zeros)
            .init(&device);
        linear.weight = Param::from_tensor(w);
        Self {
            linear,
            bn: BatchNorm1d::new(d_out, &device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.bn.forward(self.linear.forward(x))
    }
}

/// One ID head: projector (z) and predictor (p).
#[derive(Module, Debug)]
pub struct Head {
    pub projector: Vec<LinearBn>,
    pub predictor: Vec<LinearBn>,
}

impl Head {
    /// A freshly initialised head reading `d_in`-dimensional pooled features.
    pub fn new(d_in: usize, size: &HeadSize, rng: &mut Rng, device: &Device) -> Self {
        let (h, p, o) = (size.proj_hidden, size.pred_hidden, size.out_dim);
        let mut l = |i, o| LinearBn::new(i, o, rng, device);
        Self {
            projector: vec![l(d_in, h), l(h, h), l(h, o)],
            predictor: vec![l(o, p), l(p, o)],
        }
    }

    /// `x [N, D]` (all views of the batch stacked) → (z `[N, out]`, p `[N, out]`).
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let z = stack(&self.projector, x);
        let p = stack(&self.predictor, z.clone());
        (z, p)
    }
}

/// Linear+BN layers with GELU between them (none after the last).
fn stack(layers: &[LinearBn], mut x: Tensor<2>) -> Tensor<2> {
    for (i, l) in layers.iter().enumerate() {
        x = l.forward(x);
        if i + 1 < layers.len() {
            x = activation::gelu(x);
        }
    }
    x
}

fn upload<const N: usize>(t: &HostTensor, device: &Device) -> Tensor<N> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

impl Head {
    /// Loads a head from reference state-dict names (`projector.0.0.weight`, `projector.0.1.*`,
    /// …, method.md §2) under `prefix`.
    pub fn from_tensors(map: &TensorMap, prefix: &str, device: &Device) -> Result<Self> {
        let get = |k: &str| {
            map.get(&format!("{prefix}{k}"))
                .with_context(|| format!("missing head tensor `{prefix}{k}`"))
        };
        let layer = |name: &str| -> Result<LinearBn> {
            let w = get(&format!("{name}.0.weight"))?;
            let mut l = LinearBn::with_weight(upload(&w.transposed_2d(), device));
            l.bn.gamma = Param::from_tensor(upload(get(&format!("{name}.1.weight"))?, device));
            l.bn.beta = Param::from_tensor(upload(get(&format!("{name}.1.bias"))?, device));
            let inner = device.clone().inner();
            l.bn.running_mean =
                RunningState::new(upload(get(&format!("{name}.1.running_mean"))?, &inner));
            l.bn.running_var =
                RunningState::new(upload(get(&format!("{name}.1.running_var"))?, &inner));
            Ok(l)
        };
        Ok(Self {
            projector: (0..3)
                .map(|i| layer(&format!("projector.{i}")))
                .collect::<Result<_>>()?,
            predictor: (0..2)
                .map(|i| layer(&format!("predictor.{i}")))
                .collect::<Result<_>>()?,
        })
    }

    /// All tensors (parameters and BN statistics) under reference names with `prefix`.
    pub fn to_tensors(&self, prefix: &str, map: &mut TensorMap) -> Result<()> {
        for (group, layers) in [
            ("projector", &self.projector),
            ("predictor", &self.predictor),
        ] {
            for (i, l) in layers.iter().enumerate() {
                let p = format!("{prefix}{group}.{i}");
                map.insert(
                    format!("{p}.0.weight"),
                    host(l.linear.weight.val())?.transposed_2d(),
                );
                map.insert(format!("{p}.1.weight"), host(l.bn.gamma.val())?);
                map.insert(format!("{p}.1.bias"), host(l.bn.beta.val())?);
                map.insert(
                    format!("{p}.1.running_mean"),
                    host(l.bn.running_mean.value_sync())?,
                );
                map.insert(
                    format!("{p}.1.running_var"),
                    host(l.bn.running_var.value_sync())?,
                );
            }
        }
        Ok(())
    }
}
