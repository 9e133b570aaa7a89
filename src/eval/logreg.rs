//! Low-shot evaluation (method.md §5.3): multinomial logistic regression with L2 and no
//! intercept on centred, row-normalised features, fitted by L-BFGS, over seeded k-shot splits.

use super::knn::{accuracy, l2_normalize_rows};
use super::{argmax, check_labels, par_ranges, rows};
use crate::rng::Rng;
use anyhow::{Result, ensure};
use std::collections::VecDeque;

/// Solver settings of [`fit`].
#[derive(Clone, Debug)]
pub struct LogRegConfig {
    /// L2 strength λ of `mean CE + λ/2 ‖W‖²` (scikit-learn's `C` is `1 / (λ n)`).
    pub lambda: f64,
    /// Most L-BFGS iterations.
    pub max_iter: usize,
    /// Converged once the largest absolute gradient entry is at most `tol`.
    pub tol: f64,
    /// L-BFGS history length.
    pub memory: usize,
}

impl LogRegConfig {
    /// λ as given, at most 1000 iterations, gradient tolerance 1e-6, memory 10.
    pub fn new(lambda: f64) -> Self {
        Self {
            lambda,
            max_iter: 1000,
            tol: 1e-6,
            memory: 10,
        }
    }
}

/// A fitted classifier: weights `[n_classes, dim]` (row-major), no intercept.
#[derive(Clone, Debug)]
pub struct LogReg {
    pub weights: Vec<f64>,
    pub dim: usize,
    pub n_classes: usize,
    /// Final objective value.
    pub loss: f64,
    pub iterations: usize,
    /// Whether the gradient tolerance was reached (otherwise the iteration cap or a stalled
    /// line search ended the fit).
    pub converged: bool,
}

/// The §5.3 feature preprocessing, as cyanure's `preprocess(centering=True, normalize=True,
/// columns=False)` used by the MSN evaluation: every row minus its own mean, then unit L2 norm.
pub fn preprocess(x: &mut [f32], dim: usize) -> Result<()> {
    rows(x, dim, "logistic-regression features")?;
    for row in x.chunks_exact_mut(dim) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
        row.iter_mut().for_each(|v| *v = (*v as f64 - mean) as f32);
    }
    l2_normalize_rows(x, dim);
    Ok(())
}

/// Objective `mean_i CE(W x_i, y_i) + λ/2 ‖W‖²` and its gradient, parallel over samples.
fn loss_grad(
    x: &[f32],
    y: &[u32],
    dim: usize,
    c: usize,
    lambda: f64,
    w: &[f64],
    g: &mut [f64],
) -> f64 {
    let n = y.len();
    let parts = par_ranges(n, |range| {
        let mut grad = vec![0.0f64; c * dim];
        let (mut loss, mut logits) = (0.0f64, vec![0.0f64; c]);
        for i in range {
            let xi = &x[i * dim..(i + 1) * dim];
            for (k, l) in logits.iter_mut().enumerate() {
                *l = w[k * dim..(k + 1) * dim]
                    .iter()
                    .zip(xi)
                    .map(|(a, &b)| a * b as f64)
                    .sum();
            }
            let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = logits.iter().map(|l| (l - top).exp()).sum();
            loss += top + z.ln() - logits[y[i] as usize];
            for (k, l) in logits.iter().enumerate() {
                let coef = (l - top).exp() / z - if k == y[i] as usize { 1.0 } else { 0.0 };
                for (gk, &v) in grad[k * dim..(k + 1) * dim].iter_mut().zip(xi) {
                    *gk += coef * v as f64;
                }
            }
        }
        (loss, grad)
    });
    g.iter_mut().zip(w).for_each(|(gi, wi)| *gi = lambda * wi);
    let mut loss = 0.5 * lambda * w.iter().map(|v| v * v).sum::<f64>();
    for (l, grad) in parts {
        loss += l / n as f64;
        g.iter_mut()
            .zip(&grad)
            .for_each(|(gi, v)| *gi += v / n as f64);
    }
    loss
}

/// Fits multinomial logistic regression (L2, no intercept) by L-BFGS from zero weights. The
/// objective is strictly convex for λ > 0, so the result is the unique optimum up to `tol`.
pub fn fit(
    x: &[f32],
    labels: &[u32],
    dim: usize,
    n_classes: usize,
    cfg: &LogRegConfig,
) -> Result<LogReg> {
    let n = rows(x, dim, "logistic-regression train features")?;
    check_labels(labels, n, n_classes, "logistic-regression train labels")?;
    ensure!(
        n > 0,
        "logistic regression: no train rows: pass at least one labelled row"
    );
    ensure!(
        cfg.lambda > 0.0 && cfg.lambda.is_finite(),
        "logistic regression: lambda = {} must be positive and finite (§5.3 uses 0.00025 / n)",
        cfg.lambda
    );
    let f = |w: &[f64], g: &mut [f64]| loss_grad(x, labels, dim, n_classes, cfg.lambda, w, g);
    let out = lbfgs(f, vec![0.0; n_classes * dim], cfg);
    Ok(LogReg {
        weights: out.w,
        dim,
        n_classes,
        loss: out.loss,
        iterations: out.iterations,
        converged: out.converged,
    })
}

impl LogReg {
    /// Class scores `W x` of every row, `[n, n_classes]`.
    pub fn scores(&self, x: &[f32]) -> Result<Vec<f64>> {
        rows(x, self.dim, "logistic-regression features")?;
        Ok(x.chunks_exact(self.dim)
            .flat_map(|xi| {
                self.weights
                    .chunks_exact(self.dim)
                    .map(move |w| w.iter().zip(xi).map(|(a, &b)| a * b as f64).sum::<f64>())
            })
            .collect())
    }

    /// The highest-scoring class of every row (ties → lowest class id).
    pub fn predict(&self, x: &[f32]) -> Result<Vec<u32>> {
        let s = self.scores(x)?;
        Ok(s.chunks_exact(self.n_classes.max(1))
            .map(|r| argmax(r) as u32)
            .collect())
    }
}

struct Minimum {
    w: Vec<f64>,
    loss: f64,
    iterations: usize,
    converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// L-BFGS direction `−H g` by the two-loop recursion over `(s, y, 1/sᵀy)` pairs.
fn direction(g: &[f64], hist: &VecDeque<(Vec<f64>, Vec<f64>, f64)>) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(hist.len());
    for (s, y, rho) in hist.iter().rev() {
        let a = rho * dot(s, &q);
        q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
        alphas.push(a);
    }
    if let Some((s, y, _)) = hist.back() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
        let b = rho * dot(y, &q);
        q.iter_mut().zip(s).for_each(|(qi, si)| *qi += si * (a - b));
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

/// Minimises a smooth function by L-BFGS with a backtracking Armijo line search.
fn lbfgs(f: impl Fn(&[f64], &mut [f64]) -> f64, mut w: Vec<f64>, cfg: &LogRegConfig) -> Minimum {
    let mut g = vec![0.0; w.len()];
    let mut fx = f(&w, &mut g);
    let mut hist: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut g_new = vec![0.0; w.len()];
    for it in 0..cfg.max_iter {
        if g.iter().all(|v| v.abs() <= cfg.tol) {
            return Minimum {
                w,
                loss: fx,
                iterations: it,
                converged: true,
            };
        }
        let mut d = direction(&g, &hist);
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            hist.clear();
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
        }
        let mut step = if hist.is_empty() {
            1.0 / dot(&g, &g).sqrt().max(1.0)
        } else {
            1.0
        };
        let (w_new, f_new) = loop {
            let cand: Vec<f64> = w.iter().zip(&d).map(|(a, b)| a + step * b).collect();
            let f_cand = f(&cand, &mut g_new);
            if f_cand <= fx + 1e-4 * step * slope {
                break (cand, f_cand);
            }
            step *= 0.5;
            if step < 1e-20 {
                let converged = g.iter().all(|v| v.abs() <= cfg.tol);
                return Minimum {
                    w,
                    loss: fx,
                    iterations: it,
                    converged,
                };
            }
        };
        let s: Vec<f64> = w_new.iter().zip(&w).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            hist.push_back((s, y, 1.0 / sy));
            if hist.len() > cfg.memory.max(1) {
                hist.pop_front();
            }
        }
        (w, fx) = (w_new, f_new);
        std::mem::swap(&mut g, &mut g_new);
    }
    let converged = g.iter().all(|v| v.abs() <= cfg.tol);
    Minimum {
        w,
        loss: fx,
        iterations: cfg.max_iter,
        converged,
    }
}

/// Settings of [`lowshot`] (§5.3).
#[derive(Clone, Debug)]
pub struct LowShotConfig {
    /// Train images per class of each setting (the paper: 1, 2, 5).
    pub shots: Vec<usize>,
    /// Seeded random splits per setting, averaged (the paper: 3).
    pub splits: usize,
    pub seed: u64,
    /// λ · n_train: λ = `lambda_n / n_train` (§5.3: 0.00025).
    pub lambda_n: f64,
    pub max_iter: usize,
    pub tol: f64,
}

impl Default for LowShotConfig {
    fn default() -> Self {
        Self {
            shots: vec![1, 2, 5],
            splits: 3,
            seed: 0,
            lambda_n: 0.00025,
            max_iter: 300,
            tol: 1e-4,
        }
    }
}

/// Accuracy of one shots-per-class setting over its splits.
#[derive(Clone, Debug, PartialEq)]
pub struct LowShot {
    pub shots: usize,
    /// Test accuracy of each split.
    pub accuracies: Vec<f64>,
    /// Their mean.
    pub mean: f64,
}

/// Picks `shots` distinct train rows of every class present in `labels` (seeded); an error
/// names a class with too few rows.
fn sample_shots(
    labels: &[u32],
    n_classes: usize,
    shots: usize,
    rng: &mut Rng,
) -> Result<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut picked = Vec::with_capacity(shots * n_classes);
    for (c, members) in by_class
        .iter_mut()
        .enumerate()
        .filter(|(_, m)| !m.is_empty())
    {
        ensure!(
            members.len() >= shots,
            "low-shot: class {c} has {} train rows, fewer than {shots} shots: lower the shots",
            members.len()
        );
        for k in 0..shots {
            let j = k + rng.below(members.len() - k);
            members.swap(k, j);
            picked.push(members[k]);
        }
    }
    Ok(picked)
}

/// Low-shot logistic regression (§5.3): for every shots setting and split, a seeded sample of
/// `shots` train rows per class, λ = `lambda_n / n_sample`, test accuracy; the mean over splits.
/// Features are preprocessed with [`preprocess`] here.
#[allow(clippy::too_many_arguments)]
pub fn lowshot(
    train: &[f32],
    train_labels: &[u32],
    test: &[f32],
    test_labels: &[u32],
    dim: usize,
    n_classes: usize,
    cfg: &LowShotConfig,
) -> Result<Vec<LowShot>> {
    let n_train = rows(train, dim, "low-shot train features")?;
    let n_test = rows(test, dim, "low-shot test features")?;
    check_labels(train_labels, n_train, n_classes, "low-shot train labels")?;
    check_labels(test_labels, n_test, usize::MAX, "low-shot test labels")?;
    let (mut tr, mut te) = (train.to_vec(), test.to_vec());
    preprocess(&mut tr, dim)?;
    preprocess(&mut te, dim)?;
    let mut out = Vec::new();
    for &shots in &cfg.shots {
        let mut accuracies = Vec::with_capacity(cfg.splits);
        for split in 0..cfg.splits.max(1) {
            let mut rng = Rng::keyed(&[cfg.seed, shots as u64, split as u64, 0x1057]);
            let idx = sample_shots(train_labels, n_classes, shots, &mut rng)?;
            let x: Vec<f32> = idx
                .iter()
                .flat_map(|&i| tr[i * dim..(i + 1) * dim].to_vec())
                .collect();
            let y: Vec<u32> = idx.iter().map(|&i| train_labels[i]).collect();
            let solver = LogRegConfig {
                max_iter: cfg.max_iter,
                tol: cfg.tol,
                ..LogRegConfig::new(cfg.lambda_n / idx.len() as f64)
            };
            let model = fit(&x, &y, dim, n_classes, &solver)?;
            accuracies.push(accuracy(&model.predict(&te)?, test_labels));
        }
        let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
        out.push(LowShot {
            shots,
            accuracies,
            mean,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = Rng::new(2);
        let (dim, c, n) = (4, 3, 12);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
        let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
        let w: Vec<f64> = (0..c * dim).map(|_| rng.normal()).collect();
        let mut g = vec![0.0; c * dim];
        loss_grad(&x, &y, dim, c, 0.3, &w, &mut g);
        let mut tmp = vec![0.0; c * dim];
        for k in 0..c * dim {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[k] += 1e-6;
            wm[k] -= 1e-6;
            let fd = (loss_grad(&x, &y, dim, c, 0.3, &wp, &mut tmp)
                - loss_grad(&x, &y, dim, c, 0.3, &wm, &mut tmp))
                / 2e-6;
            assert!((fd - g[k]).abs() < 1e-6, "{k}: {fd} vs {}", g[k]);
        }
    }

    #[test]
    fn preprocess_centres_and_normalises_rows() {
        let mut x = vec![1.0, 2.0, 3.0, 5.0, 5.0, 5.0];
        preprocess(&mut x, 3).unwrap();
        let r = 2f32.sqrt();
        assert!(
            (x[0] + 1.0 / r).abs() < 1e-6 && x[1].abs() < 1e-6 && (x[2] - 1.0 / r).abs() < 1e-6
        );
        assert_eq!(&x[3..], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn shots_are_distinct_seeded_and_per_class() {
        let labels: Vec<u32> = (0..40).map(|i| i % 4).collect();
        let a = sample_shots(&labels, 5, 3, &mut Rng::new(1)).unwrap();
        assert_eq!(a, sample_shots(&labels, 5, 3, &mut Rng::new(1)).unwrap());
        assert_eq!(a.len(), 12);
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 12);
        for c in 0..4 {
            assert_eq!(a.iter().filter(|&&i| labels[i] == c).count(), 3);
        }
        let e = sample_shots(&labels, 4, 11, &mut Rng::new(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("class 0 has 10 train rows"), "{e}");
    }

    #[test]
    fn lowshot_separates_easy_classes() {
        let mut rng = Rng::new(4);
        let centers: Vec<f64> = (0..5 * 8).map(|_| 3.0 * rng.normal()).collect();
        let make = |n: usize, rng: &mut Rng| {
            let y: Vec<u32> = (0..n).map(|i| (i % 5) as u32).collect();
            let x: Vec<f32> = y
                .iter()
                .flat_map(|&c| {
                    (0..8)
                        .map(|d| centers[c as usize * 8 + d])
                        .collect::<Vec<_>>()
                })
                .map(|m| (m + 0.3 * rng.normal()) as f32)
                .collect();
            (x, y)
        };
        let (xtr, ytr) = make(50, &mut rng);
        let (xte, yte) = make(100, &mut rng);
        let res = lowshot(&xtr, &ytr, &xte, &yte, 8, 5, &LowShotConfig::default()).unwrap();
        assert_eq!(
            res.iter().map(|r| r.shots).collect::<Vec<_>>(),
            vec![1, 2, 5]
        );
        for r in &res {
            assert_eq!(r.accuracies.len(), 3);
            assert!(r.mean > 0.95, "{r:?}");
        }
    }
}
