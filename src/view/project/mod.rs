//! The embedding map's numerics without burn or egui (wasm-ready later): 2-D projections (PCA,
//! Barnes–Hut t-SNE), Procrustes alignment between steps, host k-means and cosine neighbours.
//!
//! Every function takes row-major [`Features`]. Non-finite values (NaN, ±inf) are read as 0, so a
//! broken row never poisons the others; results are deterministic for a seed and any thread count
//! (parallel work is split into fixed-size chunks whose partial results are combined in order).

pub mod affinity;
pub mod gradient;
pub mod kmeans;
pub mod neighbours;
pub mod pca;
pub mod procrustes;
mod quadtree;
pub mod tsne;

pub use kmeans::kmeans;
pub use neighbours::cosine_top_k;
pub use pca::pca2;
pub use procrustes::{align, align_with};
pub use tsne::{TsneConfig, TsneError, tsne};

use std::borrow::Cow;
use std::ops::Range;

/// Row-major features `[n, dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Features {
    /// Checks that `data` holds exactly `n × dim` values.
    pub fn new(n: usize, dim: usize, data: Vec<f32>) -> Result<Self, String> {
        match n.checked_mul(dim) {
            Some(len) if len == data.len() => Ok(Self { n, dim, data }),
            _ => Err(format!(
                "features: {} values are not {n} rows of width {dim}",
                data.len()
            )),
        }
    }

    /// Row `i` (empty when `i` is out of range or the fields disagree).
    pub fn row(&self, i: usize) -> &[f32] {
        let (start, end) = (i * self.dim, (i + 1) * self.dim);
        self.data.get(start..end).unwrap_or(&[])
    }

    /// The rows usable for computing: `n` cut to the rows `data` really holds, non-finite values
    /// replaced by 0 (a copy only when there are such values or the fields disagree).
    pub(crate) fn sanitized(&self) -> Cow<'_, Features> {
        let n = self
            .data
            .len()
            .checked_div(self.dim)
            .map_or(self.n, |rows| self.n.min(rows));
        let len = n * self.dim;
        if n == self.n && len == self.data.len() && self.data.iter().all(|v| v.is_finite()) {
            return Cow::Borrowed(self);
        }
        let data = self.data[..len]
            .iter()
            .map(|&v| if v.is_finite() { v } else { 0.0 })
            .collect();
        Cow::Owned(Features {
            n,
            dim: self.dim,
            data,
        })
    }
}

/// Runs `f` on the ranges `[0, chunk)`, `[chunk, 2·chunk)`, … of `0..n` and returns the results
/// in order. The one place this module uses threads (rayon): swap it for a serial map on wasm.
pub(crate) fn par_chunks<T: Send>(
    n: usize,
    chunk: usize,
    f: impl Fn(Range<usize>) -> T + Sync + Send,
) -> Vec<T> {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| f(c * chunk..((c + 1) * chunk).min(n)))
        .collect()
}

/// Dot product with independent accumulators, so that it vectorises.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_check_their_shape_and_rows() {
        assert!(Features::new(2, 3, vec![0.0; 5]).is_err());
        assert!(Features::new(usize::MAX, 2, vec![]).is_err());
        let f = Features::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(f.row(1), &[3.0, 4.0]);
        assert!(f.row(2).is_empty());
    }

    #[test]
    fn sanitized_zeroes_non_finite_values_and_borrows_clean_rows() {
        let clean = Features::new(1, 2, vec![1.0, 2.0]).unwrap();
        assert!(matches!(clean.sanitized(), Cow::Borrowed(_)));
        let dirty = Features::new(2, 2, vec![1.0, f32::NAN, f32::INFINITY, 4.0]).unwrap();
        assert_eq!(dirty.sanitized().data, vec![1.0, 0.0, 0.0, 4.0]);
        let short = Features {
            n: 3,
            dim: 2,
            data: vec![1.0; 4],
        };
        assert_eq!(short.sanitized().n, 2);
    }

    #[test]
    fn par_chunks_cover_every_index_once_in_order() {
        for (n, chunk) in [(0, 3), (1, 3), (7, 3), (9, 3), (5, 0)] {
            let all: Vec<usize> = par_chunks(n, chunk, |r| r.collect::<Vec<_>>())
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
    }
}
