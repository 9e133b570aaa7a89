//! Linear probe on frozen features (method.md §5.2): parameter-free BatchNorm with train
//! statistics, one linear layer trained by SGD with momentum, warmup + cosine, over an LR grid.

use super::knn::accuracy;
use super::{argmax, check_labels, rows};
use crate::rng::Rng;
use anyhow::{Result, ensure};
use rayon::prelude::*;

/// The base learning rates of §5.2 (each scaled by `batch_size / 256`).
pub const LR_GRID: [f32; 13] = [
    1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.3, 0.5,
];
/// BatchNorm1d's epsilon.
pub const BN_EPS: f64 = 1e-5;

/// Settings of [`linear_probe`].
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Base learning rates; each probe uses `lr × batch_size / 256` at its peak.
    pub lrs: Vec<f32>,
    pub epochs: usize,
    pub batch_size: usize,
    pub momentum: f32,
    /// Fraction of all steps spent in linear warmup before the cosine decay to 0.
    pub warmup_frac: f32,
    /// Standard deviation of the truncated-normal (±2σ) weight init; the bias starts at 0.
    pub init_std: f32,
    pub seed: u64,
}

impl Default for ProbeConfig {
    /// §5.2: the 13-value LR grid, 50 epochs, batch 1024, momentum 0.9, 10 % warmup, std 0.01.
    fn default() -> Self {
        Self {
            lrs: LR_GRID.to_vec(),
            epochs: 50,
            batch_size: 1024,
            momentum: 0.9,
            warmup_frac: 0.1,
            init_std: 0.01,
            seed: 0,
        }
    }
}

/// Test accuracy of every probe and the best one.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// `(base lr, test accuracy)` in the order of [`ProbeConfig::lrs`].
    pub per_lr: Vec<(f32, f64)>,
    pub best_lr: f32,
    pub best_accuracy: f64,
}

/// Standardises the columns of `train` and `test` with the train mean and biased variance: a
/// BatchNorm1d(affine=False) whose statistics are those of the (fixed, unaugmented) train set.
fn batch_norm(train: &[f32], test: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (train.len() / dim).max(1) as f64;
    let (mut mean, mut var) = (vec![0.0f64; dim], vec![0.0f64; dim]);
    for row in train.chunks_exact(dim) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m += v as f64 / n);
    }
    for row in train.chunks_exact(dim) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2) / n;
        }
    }
    let scale: Vec<f64> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
    let apply = |x: &[f32]| -> Vec<f32> {
        x.chunks_exact(dim)
            .flat_map(|row| {
                row.iter()
                    .zip(&mean)
                    .zip(&scale)
                    .map(|((&v, m), s)| ((v as f64 - m) * s) as f32)
            })
            .collect()
    };
    (apply(train), apply(test))
}

/// The learning rate of `step` (0-based) of `total`: linear warmup to `peak`, then cosine to 0.
fn lr_at(step: usize, total: usize, warmup: usize, peak: f32) -> f32 {
    if step < warmup {
        return peak * (step + 1) as f32 / warmup as f32;
    }
    let span = (total - warmup).max(1) as f32;
    let t = (step - warmup) as f32 / span;
    peak * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
}

/// Linear probes (§5.2), one per learning rate of the grid, trained in parallel on the host in
/// f32 from the same seeded init and batch order; reports the test accuracy of each after the
/// last epoch and the best. Features are BatchNorm-ed here (train statistics).
#[allow(clippy::too_many_arguments)]
pub fn linear_probe(
    train: &[f32],
    train_labels: &[u32],
    test: &[f32],
    test_labels: &[u32],
    dim: usize,
    n_classes: usize,
    cfg: &ProbeConfig,
) -> Result<ProbeResult> {
    let n_train = rows(train, dim, "linear-probe train features")?;
    let n_test = rows(test, dim, "linear-probe test features")?;
    check_labels(
        train_labels,
        n_train,
        n_classes,
        "linear-probe train labels",
    )?;
    check_labels(test_labels, n_test, usize::MAX, "linear-probe test labels")?;
    ensure!(
        n_train > 0,
        "linear probe: no train rows: pass at least one labelled row"
    );
    ensure!(
        !cfg.lrs.is_empty() && cfg.epochs > 0 && cfg.batch_size > 0,
        "linear probe: lrs = {:?}, epochs = {}, batch_size = {}: pass at least one LR and \
         positive epochs and batch size",
        cfg.lrs,
        cfg.epochs,
        cfg.batch_size
    );
    let (tr, te) = batch_norm(train, test, dim);
    let mut rng = Rng::keyed(&[cfg.seed, 0x9B0E]);
    let init: Vec<f32> = (0..n_classes * dim)
        .map(|_| {
            loop {
                let z = rng.normal();
                if z.abs() <= 2.0 {
                    break (z * cfg.init_std as f64) as f32;
                }
            }
        })
        .collect();
    let data = Train {
        x: &tr,
        y: train_labels,
        dim,
        n_classes,
    };
    let per_lr: Vec<(f32, f64)> = cfg
        .lrs
        .par_iter()
        .map(|&lr| {
            let (w, b) = data.sgd(lr, init.clone(), cfg);
            (lr, accuracy(&predict(&te, dim, &w, &b), test_labels))
        })
        .collect();
    let (best_lr, best_accuracy) =
        per_lr
            .iter()
            .copied()
            .fold((cfg.lrs[0], f64::NEG_INFINITY), |a, b| {
                if b.1 > a.1 { b } else { a }
            });
    Ok(ProbeResult {
        per_lr,
        best_lr,
        best_accuracy,
    })
}

/// The normalised train set of one probe.
struct Train<'a> {
    x: &'a [f32],
    y: &'a [u32],
    dim: usize,
    n_classes: usize,
}

impl Train<'_> {
    /// Trains weights `[C, dim]` and bias `[C]` by SGD with momentum on the softmax cross-entropy.
    fn sgd(&self, base_lr: f32, mut w: Vec<f32>, cfg: &ProbeConfig) -> (Vec<f32>, Vec<f32>) {
        let (n, c) = (self.y.len(), self.n_classes);
        let mut b = vec![0.0f32; c];
        let (mut vw, mut vb) = (vec![0.0f32; w.len()], vec![0.0f32; c]);
        let (mut gw, mut gb) = (vec![0.0f32; w.len()], vec![0.0f32; c]);
        let per_epoch = n.div_ceil(cfg.batch_size);
        let total = per_epoch * cfg.epochs;
        let warmup = (cfg.warmup_frac.max(0.0) * total as f32).round() as usize;
        let peak = base_lr * cfg.batch_size as f32 / 256.0;
        let mut step = 0;
        for epoch in 0..cfg.epochs {
            let order = permutation(n, &mut Rng::keyed(&[cfg.seed, epoch as u64, 0xB0B]));
            for batch in order.chunks(cfg.batch_size) {
                self.gradient(batch, &w, &b, &mut gw, &mut gb);
                let lr = lr_at(step, total, warmup, peak);
                for (p, (v, g)) in w.iter_mut().zip(vw.iter_mut().zip(&gw)) {
                    *v = cfg.momentum * *v + g;
                    *p -= lr * *v;
                }
                for (p, (v, g)) in b.iter_mut().zip(vb.iter_mut().zip(&gb)) {
                    *v = cfg.momentum * *v + g;
                    *p -= lr * *v;
                }
                step += 1;
            }
        }
        (w, b)
    }

    /// Mean cross-entropy gradient of one minibatch into `gw` `[C, dim]` and `gb` `[C]`.
    fn gradient(&self, batch: &[usize], w: &[f32], b: &[f32], gw: &mut [f32], gb: &mut [f32]) {
        let (dim, inv) = (self.dim, 1.0 / batch.len() as f32);
        gw.fill(0.0);
        gb.fill(0.0);
        let mut p = vec![0.0f32; self.n_classes];
        for &i in batch {
            let xi = &self.x[i * dim..(i + 1) * dim];
            softmax_logits(xi, w, b, &mut p);
            p[self.y[i] as usize] -= 1.0;
            for (k, &coef) in p.iter().enumerate() {
                let coef = coef * inv;
                gb[k] += coef;
                for (g, &v) in gw[k * dim..(k + 1) * dim].iter_mut().zip(xi) {
                    *g += coef * v;
                }
            }
        }
    }
}

/// `p = softmax(W x + b)`.
fn softmax_logits(x: &[f32], w: &[f32], b: &[f32], p: &mut [f32]) {
    let dim = x.len();
    for (k, pk) in p.iter_mut().enumerate() {
        *pk = b[k]
            + w[k * dim..(k + 1) * dim]
                .iter()
                .zip(x)
                .map(|(a, v)| a * v)
                .sum::<f32>();
    }
    let top = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0f32;
    p.iter_mut().for_each(|v| {
        *v = (*v - top).exp();
        z += *v;
    });
    p.iter_mut().for_each(|v| *v /= z);
}

/// Highest-scoring class of every row of `x` under `W x + b` (ties → lowest class id).
fn predict(x: &[f32], dim: usize, w: &[f32], b: &[f32]) -> Vec<u32> {
    let mut scores = vec![0.0f32; b.len()];
    x.chunks_exact(dim)
        .map(|xi| {
            for (k, s) in scores.iter_mut().enumerate() {
                *s = b[k]
                    + w[k * dim..(k + 1) * dim]
                        .iter()
                        .zip(xi)
                        .map(|(a, v)| a * v)
                        .sum::<f32>();
            }
            argmax(&scores) as u32
        })
        .collect()
}

/// A seeded uniform permutation of `0..n` (Fisher–Yates).
fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((lr_at(0, 100, 10, 1.0) - 0.1).abs() < 1e-6);
        assert!((lr_at(9, 100, 10, 1.0) - 1.0).abs() < 1e-6);
        assert!((lr_at(10, 100, 10, 1.0) - 1.0).abs() < 1e-6);
        assert!((lr_at(55, 100, 10, 1.0) - 0.5).abs() < 1e-6);
        assert!(lr_at(99, 100, 10, 1.0) < 0.001);
        assert!((lr_at(0, 10, 0, 2.0) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn batch_norm_uses_train_statistics() {
        let (tr, te) = batch_norm(&[1.0, 3.0], &[2.0, 5.0], 1);
        assert!((tr[0] + 1.0).abs() < 1e-4 && (tr[1] - 1.0).abs() < 1e-4);
        assert!(te[0].abs() < 1e-6 && (te[1] - 3.0).abs() < 1e-4);
    }

    #[test]
    fn probe_learns_a_linearly_separable_problem_and_picks_the_best_lr() {
        let mut rng = Rng::new(9);
        let dim = 6;
        let make = |n: usize, rng: &mut Rng| {
            let x: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
            // class = sign pattern of two coordinates: linearly separable, 4 classes
            let y = x
                .chunks(dim)
                .map(|r| (r[0] > 0.0) as u32 * 2 + (r[3] > 0.0) as u32)
                .collect::<Vec<_>>();
            (x, y)
        };
        let (xtr, ytr) = make(400, &mut rng);
        let (xte, yte) = make(200, &mut rng);
        let cfg = ProbeConfig {
            lrs: vec![1e-4, 0.5],
            epochs: 30,
            batch_size: 32,
            ..ProbeConfig::default()
        };
        let r = linear_probe(&xtr, &ytr, &xte, &yte, dim, 4, &cfg).unwrap();
        assert_eq!(r.per_lr.len(), 2);
        assert_eq!(r.best_lr, 0.5, "{r:?}");
        assert!(
            r.best_accuracy > 0.9 && r.per_lr[0].1 < r.best_accuracy,
            "{r:?}"
        );
        assert_eq!(
            r,
            linear_probe(&xtr, &ytr, &xte, &yte, dim, 4, &cfg).unwrap()
        );
    }
}
