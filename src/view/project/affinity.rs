//! t-SNE's input affinities: exact euclidean k nearest neighbours (blocked, parallel), per-row
//! perplexity calibration by binary search and the symmetrised sparse joint P (as scikit-learn).

use super::{Features, dot, par_chunks};
use std::cmp::Ordering;

/// Queries per parallel task.
const QUERIES: usize = 32;
/// Candidate rows per cache tile.
const TILE: usize = 256;
/// Extra candidates re-ranked by their exact distance (guards the k-th place against rounding).
const MARGIN: usize = 8;
const PERPLEXITY_TOL: f64 = 1e-5;
const SEARCH_STEPS: usize = 100;

/// Each row's `k` nearest other rows, row-major `[n, k]`, by squared euclidean distance
/// ascending (ties by index ascending).
#[derive(Clone, Debug, PartialEq)]
pub struct Knn {
    pub n: usize,
    pub k: usize,
    pub indices: Vec<usize>,
    pub sq_dists: Vec<f32>,
}

/// The symmetric joint probabilities `P` as CSR (columns ascending in each row), summing to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseP {
    pub n: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<usize>,
    pub values: Vec<f64>,
}

impl SparseP {
    /// Row `i`'s `(column, value)` pairs.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let r = self.indptr[i]..self.indptr[i + 1];
        self.indices[r.clone()]
            .iter()
            .copied()
            .zip(self.values[r].iter().copied())
    }
}

/// Exact k nearest neighbours (`k` capped at n − 1; non-finite values read as 0): distances by
/// `‖a‖² + ‖b‖² − 2a·b` in cache tiles, the best `k + 8` re-ranked by their exact distance.
pub fn knn(x: &Features, k: usize) -> Knn {
    let x = x.sanitized();
    let k = k.min(x.n.saturating_sub(1));
    let norms: Vec<f32> = (0..x.n).map(|i| dot(x.row(i), x.row(i))).collect();
    let parts = par_chunks(x.n, QUERIES, |r| knn_block(&x, &norms, r.start, r.len(), k));
    let (mut indices, mut sq_dists) = (Vec::with_capacity(x.n * k), Vec::with_capacity(x.n * k));
    for (i, d) in parts.into_iter().flatten() {
        indices.push(i);
        sq_dists.push(d);
    }
    Knn {
        n: x.n,
        k,
        indices,
        sq_dists,
    }
}

/// The neighbours of rows `start..start+len`, flattened.
fn knn_block(x: &Features, norms: &[f32], start: usize, len: usize, k: usize) -> Vec<(usize, f32)> {
    let n = x.n;
    let mut d = vec![0.0f32; len * n];
    for tile in (0..n).step_by(TILE) {
        let tile = tile..(tile + TILE).min(n);
        for t in 0..len {
            let (i, q) = (start + t, x.row(start + t));
            for j in tile.clone() {
                d[t * n + j] = norms[i] + norms[j] - 2.0 * dot(q, x.row(j));
            }
        }
    }
    let mut out = Vec::with_capacity(len * k);
    for t in 0..len {
        out.extend(best(x, start + t, &d[t * n..(t + 1) * n], k));
    }
    out
}

/// Row `i`'s `k` best columns of the approximate distances `d`, re-ranked exactly.
fn best(x: &Features, i: usize, d: &[f32], k: usize) -> Vec<(usize, f32)> {
    let order = |a: &(usize, f32), b: &(usize, f32)| -> Ordering {
        a.1.total_cmp(&b.1).then(a.0.cmp(&b.0))
    };
    let mut c: Vec<(usize, f32)> = d.iter().copied().enumerate().filter(|p| p.0 != i).collect();
    let m = (k + MARGIN).min(c.len());
    if m < c.len() {
        c.select_nth_unstable_by(m, order);
        c.truncate(m);
    }
    for p in c.iter_mut() {
        p.1 = x
            .row(i)
            .iter()
            .zip(x.row(p.0))
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
    }
    c.sort_by(order);
    c.truncate(k);
    c
}

/// scikit-learn's `_joint_probabilities_nn`: per row, the Gaussian conditional probabilities over
/// its neighbours with the precision found by binary search for `perplexity` (entropy within
/// 1e-5 nats, at most 100 halvings/doublings); then `P = (C + Cᵀ) / ΣC`.
pub fn joint_probabilities(knn: &Knn, perplexity: f32) -> SparseP {
    let k = knn.k;
    let rows = par_chunks(knn.n, 256, |r| {
        r.flat_map(|i| conditional_row(&knn.sq_dists[i * k..(i + 1) * k], perplexity as f64))
            .collect::<Vec<_>>()
    });
    let cond: Vec<f64> = rows.into_iter().flatten().collect();
    symmetrise(knn, &cond)
}

/// One row's conditional probabilities (sklearn's `_binary_search_perplexity`).
fn conditional_row(d: &[f32], perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    let (mut lo, mut hi, mut beta) = (f64::NEG_INFINITY, f64::INFINITY, 1.0f64);
    let mut p = vec![0.0f64; d.len()];
    for _ in 0..SEARCH_STEPS {
        p.iter_mut()
            .zip(d)
            .for_each(|(p, &d)| *p = (-(d as f64) * beta).exp());
        let sum = p.iter().sum::<f64>();
        let sum = if sum == 0.0 { 1e-8 } else { sum };
        p.iter_mut().for_each(|p| *p /= sum);
        let mean_d: f64 = p.iter().zip(d).map(|(p, &d)| p * d as f64).sum();
        let diff = sum.ln() + beta * mean_d - target;
        if diff.abs() <= PERPLEXITY_TOL {
            break;
        }
        if diff > 0.0 {
            lo = beta;
            beta = if hi == f64::INFINITY {
                beta * 2.0
            } else {
                (beta + hi) / 2.0
            };
        } else {
            hi = beta;
            beta = if lo == f64::NEG_INFINITY {
                beta / 2.0
            } else {
                (beta + lo) / 2.0
            };
        }
    }
    p
}

/// `(C + Cᵀ) / Σ` as CSR with sorted columns, `C` the row-major `[n, k]` conditionals.
fn symmetrise(knn: &Knn, cond: &[f64]) -> SparseP {
    let (n, k) = (knn.n, knn.k);
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for i in 0..n {
        for t in 0..k {
            let (j, c) = (knn.indices[i * k + t], cond[i * k + t]);
            rows[i].push((j, c));
            rows[j].push((i, c));
        }
    }
    let total: f64 = 2.0 * cond.iter().sum::<f64>();
    let scale = 1.0 / total.max(f64::EPSILON);
    let mut p = SparseP {
        n,
        indptr: vec![0],
        indices: Vec::new(),
        values: Vec::new(),
    };
    for mut row in rows {
        row.sort_by_key(|e| e.0);
        for (j, c) in row {
            if p.indices.len() > *p.indptr.last().unwrap_or(&0) && p.indices.last() == Some(&j) {
                if let Some(v) = p.values.last_mut() {
                    *v += c * scale;
                }
            } else {
                p.indices.push(j);
                p.values.push(c * scale);
            }
        }
        p.indptr.push(p.indices.len());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_rows_reach_the_perplexity() {
        let d: Vec<f32> = (0..30).map(|i| (i as f32 * 0.3).powi(2)).collect();
        let p = conditional_row(&d, 5.0);
        let h: f64 = -p
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|v| v * v.ln())
            .sum::<f64>();
        assert!((h.exp() - 5.0).abs() < 1e-3, "perplexity {}", h.exp());
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn knn_matches_brute_force_and_handles_tiny_inputs() {
        let data: Vec<f32> = (0..7 * 9).map(|i| ((i * 37 % 11) as f32).sin()).collect();
        let x = Features::new(7, 9, data).unwrap();
        let g = knn(&x, 3);
        for i in 0..7 {
            let mut all: Vec<(usize, f32)> = (0..7)
                .filter(|&j| j != i)
                .map(|j| {
                    (
                        j,
                        x.row(i)
                            .iter()
                            .zip(x.row(j))
                            .map(|(a, b)| (a - b).powi(2))
                            .sum(),
                    )
                })
                .collect();
            all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            assert_eq!(
                &g.indices[i * 3..i * 3 + 3],
                &[all[0].0, all[1].0, all[2].0]
            );
        }
        assert_eq!(knn(&Features::new(1, 2, vec![1.0; 2]).unwrap(), 5).k, 0);
        assert_eq!(
            knn(&Features::new(0, 2, vec![]).unwrap(), 5).indices.len(),
            0
        );
    }

    #[test]
    fn joint_p_is_symmetric_and_sums_to_one() {
        let data: Vec<f32> = (0..40 * 3).map(|i| ((i * 13 % 17) as f32).cos()).collect();
        let p = joint_probabilities(&knn(&Features::new(40, 3, data).unwrap(), 6), 3.0);
        let total: f64 = p.values.iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
        for i in 0..40 {
            for (j, v) in p.row(i) {
                let back = p.row(j).find(|e| e.0 == i).map(|e| e.1);
                assert_eq!(back, Some(v));
            }
        }
    }
}
