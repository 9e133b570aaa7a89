//! Barnes–Hut t-SNE (van der Maaten 2014) as scikit-learn runs it: sparse P from the 3·perplexity
//! nearest neighbours, PCA initialisation, gradient descent with momentum, gains and exaggeration.

use super::affinity::{joint_probabilities, knn};
use super::gradient::gradient_bh;
use super::{Features, pca2};
use crate::rng::Rng;
use std::fmt;

/// Iterations with early exaggeration and momentum 0.5 (scikit-learn's exploration phase).
const EXPLORATION: usize = 250;
const MIN_GAIN: f64 = 0.01;
/// Iterations between two `progress` calls.
const PROGRESS_EVERY: usize = 10;

/// Settings of [`tsne`].
#[derive(Clone, Debug, PartialEq)]
pub struct TsneConfig {
    /// Effective number of neighbours (30); 3·perplexity neighbours enter P.
    pub perplexity: f32,
    /// Barnes–Hut angle (0.5); 0 computes the repulsion exactly (O(n²) per iteration).
    pub theta: f32,
    /// Gradient steps (750).
    pub iterations: usize,
    /// Step size; None = scikit-learn's 'auto': max(n / early_exaggeration / 4, 50).
    pub learning_rate: Option<f32>,
    /// Factor on P during the first 250 iterations (12).
    pub early_exaggeration: f32,
    /// Seeds the random initialisation used when the PCA one is degenerate (all scores equal);
    /// the PCA initialisation itself does not depend on it.
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            theta: 0.5,
            iterations: 750,
            learning_rate: None,
            early_exaggeration: 12.0,
            seed: 0,
        }
    }
}

/// Why [`tsne`] returned no embedding.
#[derive(Clone, Debug, PartialEq)]
pub enum TsneError {
    /// `progress` returned false.
    Cancelled,
    /// A setting out of range (named in the message).
    InvalidConfig(String),
}

impl fmt::Display for TsneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => write!(f, "t-SNE cancelled"),
            Self::InvalidConfig(m) => write!(f, "t-SNE settings: {m}"),
        }
    }
}

impl std::error::Error for TsneError {}

/// Barnes–Hut t-SNE of the rows into 2-D. `progress(iter, &embedding)` is called after every
/// 10th iteration and after the last one (`iter` = iterations done); returning false cancels and
/// the function returns `Err(Cancelled)` (keep the last embedding shown if a partial one is
/// wanted). n < 4: the PCA scores (one `progress(0, …)` call). Non-finite values are read as 0.
pub fn tsne(
    x: &Features,
    cfg: &TsneConfig,
    mut progress: impl FnMut(usize, &[[f32; 2]]) -> bool,
) -> Result<Vec<[f32; 2]>, TsneError> {
    validate(cfg)?;
    let x = x.sanitized();
    if x.n < 4 {
        let e = pca2(&x);
        return if progress(0, &e) {
            Ok(e)
        } else {
            Err(TsneError::Cancelled)
        };
    }
    let k = (x.n - 1).min((3.0 * cfg.perplexity + 1.0) as usize);
    let p = joint_probabilities(&knn(&x, k), cfg.perplexity);
    let mut y = initial(&x, cfg.seed);
    let auto = (x.n as f64 / cfg.early_exaggeration as f64 / 4.0).max(50.0);
    let lr = cfg.learning_rate.map_or(auto, f64::from);
    let mut opt = Optimizer::new(x.n);
    for it in 0..cfg.iterations {
        let (momentum, exaggeration) = if it < EXPLORATION {
            (0.5, cfg.early_exaggeration as f64)
        } else {
            (0.8, 1.0)
        };
        if it == EXPLORATION {
            opt = Optimizer::new(x.n); // scikit-learn restarts the descent for the second phase
        }
        let g = gradient_bh(&p, &y, cfg.theta as f64, exaggeration);
        opt.step(&mut y, &g, momentum, lr);
        let done = it + 1;
        if (done % PROGRESS_EVERY == 0 || done == cfg.iterations) && !progress(done, &to_f32(&y)) {
            return Err(TsneError::Cancelled);
        }
    }
    Ok(to_f32(&y))
}

fn validate(cfg: &TsneConfig) -> Result<(), TsneError> {
    let bad = |m: &str| Err(TsneError::InvalidConfig(m.to_string()));
    if !(cfg.perplexity.is_finite() && cfg.perplexity > 0.0) {
        return bad("perplexity must be a positive number");
    }
    if !(cfg.theta.is_finite() && cfg.theta >= 0.0) {
        return bad("theta must be >= 0");
    }
    if !(cfg.early_exaggeration.is_finite() && cfg.early_exaggeration > 0.0) {
        return bad("early_exaggeration must be a positive number");
    }
    if cfg
        .learning_rate
        .is_some_and(|l| !(l.is_finite() && l > 0.0))
    {
        return bad("learning_rate must be a positive number");
    }
    Ok(())
}

/// scikit-learn's init='pca': the PCA scores divided by the first one's std, times 1e-4;
/// random normal × 1e-4 from `seed` when that std is 0.
fn initial(x: &Features, seed: u64) -> Vec<[f64; 2]> {
    let s = pca2(x);
    let mean = s.iter().map(|p| p[0] as f64).sum::<f64>() / s.len() as f64;
    let var = s.iter().map(|p| (p[0] as f64 - mean).powi(2)).sum::<f64>() / s.len() as f64;
    if var > 0.0 && var.is_finite() {
        let scale = 1e-4 / var.sqrt();
        return s.iter().map(|p| p.map(|v| v as f64 * scale)).collect();
    }
    let mut rng = Rng::keyed(&[seed, 0x7473_6E65]);
    (0..x.n)
        .map(|_| [rng.normal() * 1e-4, rng.normal() * 1e-4])
        .collect()
}

fn to_f32(y: &[[f64; 2]]) -> Vec<[f32; 2]> {
    y.iter().map(|p| p.map(|v| v as f32)).collect()
}

/// Momentum and per-coordinate gains (delta-bar-delta), as scikit-learn's `_gradient_descent`.
struct Optimizer {
    update: Vec<[f64; 2]>,
    gains: Vec<[f64; 2]>,
}

impl Optimizer {
    fn new(n: usize) -> Self {
        Self {
            update: vec![[0.0; 2]; n],
            gains: vec![[1.0; 2]; n],
        }
    }

    /// Gains grow by 0.2 where the step keeps its direction and shrink ×0.8 elsewhere (≥ 0.01);
    /// update = momentum·update − lr·gain·grad; y += update.
    fn step(&mut self, y: &mut [[f64; 2]], grad: &[[f64; 2]], momentum: f64, lr: f64) {
        for (((y, g), u), gain) in y
            .iter_mut()
            .zip(grad)
            .zip(&mut self.update)
            .zip(&mut self.gains)
        {
            for c in 0..2 {
                gain[c] = if u[c] * g[c] < 0.0 {
                    gain[c] + 0.2
                } else {
                    gain[c] * 0.8
                };
                gain[c] = gain[c].max(MIN_GAIN);
                u[c] = momentum * u[c] - lr * gain[c] * g[c];
                y[c] += u[c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_inputs_and_bad_settings() {
        let x = Features::new(3, 2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 2.0]).unwrap();
        let e = tsne(&x, &TsneConfig::default(), |_, _| true).unwrap();
        assert_eq!(e, pca2(&x));
        assert_eq!(
            tsne(&x, &TsneConfig::default(), |_, _| false),
            Err(TsneError::Cancelled)
        );
        let empty = Features::new(0, 2, vec![]).unwrap();
        assert!(
            tsne(&empty, &TsneConfig::default(), |_, _| true)
                .unwrap()
                .is_empty()
        );
        let bad = TsneConfig {
            perplexity: f32::NAN,
            ..Default::default()
        };
        assert!(matches!(
            tsne(&x, &bad, |_, _| true),
            Err(TsneError::InvalidConfig(_))
        ));
    }

    #[test]
    fn identical_points_fall_back_to_a_seeded_random_start_and_stay_finite() {
        let x = Features::new(6, 3, vec![1.0; 18]).unwrap();
        let cfg = TsneConfig {
            perplexity: 2.0,
            iterations: 30,
            ..Default::default()
        };
        let a = tsne(&x, &cfg, |_, _| true).unwrap();
        assert_eq!(a, tsne(&x, &cfg, |_, _| true).unwrap());
        assert!(a.iter().flatten().all(|v| v.is_finite()));
    }

    #[test]
    fn progress_is_called_every_ten_iterations_and_at_the_end() {
        let data: Vec<f32> = (0..20 * 3).map(|i| (i as f32 * 0.7).sin()).collect();
        let x = Features::new(20, 3, data).unwrap();
        let cfg = TsneConfig {
            perplexity: 3.0,
            iterations: 25,
            ..Default::default()
        };
        let mut calls = Vec::new();
        tsne(&x, &cfg, |it, e| {
            calls.push((it, e.len()));
            true
        })
        .unwrap();
        assert_eq!(calls, vec![(10, 20), (20, 20), (25, 20)]);
    }
}
