//! Top-2 principal components of feature rows: covariance accumulated in f64 (f32 products over
//! blocks of 128 rows), then block subspace iteration with Rayleigh–Ritz (Jacobi) for the top two.

use super::{Features, dot, par_chunks};
use crate::rng::Rng;

/// Rows per transposed block whose f32 products are summed before entering the f64 covariance.
const BLOCK: usize = 128;
/// Width of the iterated subspace (wider converges faster when eigenvalues 2 and 3 are close).
const SUBSPACE: usize = 12;
const MAX_ITERS: usize = 500;
const TOL: f64 = 1e-10;

/// Top-2 principal-component scores of the centred rows. Each component's sign is fixed so that
/// its largest-|loading| entry (the first of equals) is positive. n < 2 or dim = 0 → zeros; a
/// missing second component (dim = 1, rank 1) scores 0. Non-finite values are read as 0.
pub fn pca2(x: &Features) -> Vec<[f32; 2]> {
    let x = x.sanitized();
    let Some((mean, comps)) = fit(&x) else {
        return vec![[0.0; 2]; x.n];
    };
    let rows = par_chunks(x.n, 4096, |r| {
        r.map(|i| {
            let c = x.row(i).iter().zip(&mean).map(|(&v, m)| v as f64 - m);
            let (mut a, mut b) = (0.0, 0.0);
            for ((v, p), q) in c.zip(&comps[0]).zip(&comps[1]) {
                a += v * p;
                b += v * q;
            }
            [a as f32, b as f32]
        })
        .collect::<Vec<_>>()
    });
    rows.into_iter().flatten().collect()
}

/// Mean and the two leading unit eigenvectors of the covariance (sign-fixed), or None for n < 2.
pub(crate) fn fit(x: &Features) -> Option<(Vec<f64>, [Vec<f64>; 2])> {
    if x.n < 2 || x.dim == 0 {
        return None;
    }
    let mean = mean(x);
    let cov = covariance(x, &mean);
    let mut comps = top2(&cov, x.dim);
    comps.iter_mut().for_each(|c| fix_sign(c));
    Some((mean, comps))
}

/// Column means in f64.
fn mean(x: &Features) -> Vec<f64> {
    let parts = par_chunks(x.n, 4096, |r| {
        let mut s = vec![0.0f64; x.dim];
        for i in r {
            s.iter_mut()
                .zip(x.row(i))
                .for_each(|(a, &v)| *a += v as f64);
        }
        s
    });
    let mut m = vec![0.0f64; x.dim];
    for p in parts {
        m.iter_mut().zip(p).for_each(|(a, v)| *a += v);
    }
    m.iter_mut().for_each(|v| *v /= x.n as f64);
    m
}

/// Sample covariance `[dim, dim]` (divided by n − 1) of the centred rows.
fn covariance(x: &Features, mean: &[f64]) -> Vec<f64> {
    let d = x.dim;
    // at most ~64 MiB of partial matrices, chunks fixed by (n, dim) alone
    let parts = ((64usize << 20) / (d * d * 8).max(1)).clamp(1, 32);
    let chunk = x.n.div_ceil(parts).max(BLOCK);
    let partials = par_chunks(x.n, chunk, |r| {
        let mut acc = vec![0.0f64; d * d];
        let mut t = vec![0.0f32; d * BLOCK];
        for start in r.clone().step_by(BLOCK) {
            let len = BLOCK.min(r.end - start);
            transpose_centred(x, mean, start, len, &mut t);
            add_gram(&t, d, &mut acc);
        }
        acc
    });
    let mut cov = vec![0.0f64; d * d];
    for p in partials {
        cov.iter_mut().zip(p).for_each(|(a, v)| *a += v);
    }
    let scale = 1.0 / (x.n - 1) as f64;
    for a in 0..d {
        for b in a..d {
            let v = cov[a * d + b] * scale;
            cov[a * d + b] = v;
            cov[b * d + a] = v;
        }
    }
    cov
}

/// Writes rows `start..start+len` centred and transposed into `t` `[dim, BLOCK]` (zero padded).
fn transpose_centred(x: &Features, mean: &[f64], start: usize, len: usize, t: &mut [f32]) {
    t.fill(0.0);
    for r in 0..len {
        for (c, (&v, m)) in x.row(start + r).iter().zip(mean).enumerate() {
            t[c * BLOCK + r] = (v as f64 - m) as f32;
        }
    }
}

/// Adds the upper triangle of `t tᵀ` to `acc`.
fn add_gram(t: &[f32], d: usize, acc: &mut [f64]) {
    for a in 0..d {
        let ta = &t[a * BLOCK..(a + 1) * BLOCK];
        for b in a..d {
            acc[a * d + b] += dot(ta, &t[b * BLOCK..(b + 1) * BLOCK]) as f64;
        }
    }
}

/// The two leading unit eigenvectors of the symmetric `c` `[d, d]` (zeros past the rank/width).
fn top2(c: &[f64], d: usize) -> [Vec<f64>; 2] {
    if d <= SUBSPACE {
        let (_, vecs) = jacobi_eigen(c.to_vec(), d);
        return [0, 1].map(|k| column(&vecs, d, d, k));
    }
    subspace_top2(c, d)
}

/// Column `k` of a row-major `[rows, cols]` matrix (zeros if `k ≥ cols`).
fn column(m: &[f64], rows: usize, cols: usize, k: usize) -> Vec<f64> {
    (0..rows)
        .map(|r| if k < cols { m[r * cols + k] } else { 0.0 })
        .collect()
}

/// Block subspace iteration: V ← orth(C V) with a Rayleigh–Ritz rotation every step, until the
/// two leading Ritz pairs have residual ‖C v − λ v‖ ≤ TOL·λ₁ (or MAX_ITERS).
fn subspace_top2(c: &[f64], d: usize) -> [Vec<f64>; 2] {
    let b = SUBSPACE;
    let mut rng = Rng::new(0x9CA2);
    let mut v: Vec<f64> = (0..d * b).map(|_| rng.normal()).collect();
    orthonormalize(&mut v, d, b);
    for _ in 0..MAX_ITERS {
        let w = mat_mul(c, d, d, &v, b);
        let h = at_b(&v, &w, d, b);
        let (vals, e) = jacobi_eigen(h, b);
        let (v2, w2) = (mat_mul(&v, d, b, &e, b), mat_mul(&w, d, b, &e, b));
        let scale = vals[0].abs().max(f64::MIN_POSITIVE);
        let done = (0..2).all(|k| residual(&v2, &w2, d, b, k, vals[k]) <= TOL * scale);
        if done || vals[0] <= 0.0 {
            return [0, 1].map(|k| column(&v2, d, b, k));
        }
        v = w2;
        orthonormalize(&mut v, d, b);
    }
    [0, 1].map(|k| column(&v, d, b, k))
}

/// ‖w_k − λ v_k‖ for column k of row-major `[d, b]` matrices.
fn residual(v: &[f64], w: &[f64], d: usize, b: usize, k: usize, lambda: f64) -> f64 {
    (0..d)
        .map(|r| (w[r * b + k] - lambda * v[r * b + k]).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// `a` `[r, m]` times `b` `[m, k]`, row-major.
fn mat_mul(a: &[f64], r: usize, m: usize, b: &[f64], k: usize) -> Vec<f64> {
    let mut out = vec![0.0; r * k];
    for i in 0..r {
        let o = &mut out[i * k..(i + 1) * k];
        for (j, &aij) in a[i * m..(i + 1) * m].iter().enumerate() {
            o.iter_mut()
                .zip(&b[j * k..(j + 1) * k])
                .for_each(|(o, &x)| *o += aij * x);
        }
    }
    out
}

/// `aᵀ b` for row-major `[d, k]` matrices → `[k, k]`.
fn at_b(a: &[f64], b: &[f64], d: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; k * k];
    for r in 0..d {
        for i in 0..k {
            let ai = a[r * k + i];
            for j in 0..k {
                out[i * k + j] += ai * b[r * k + j];
            }
        }
    }
    out
}

/// Modified Gram–Schmidt on the `b` columns of row-major `[d, b]`; a dependent column becomes 0.
fn orthonormalize(v: &mut [f64], d: usize, b: usize) {
    for k in 0..b {
        for j in 0..k {
            let p: f64 = (0..d).map(|r| v[r * b + k] * v[r * b + j]).sum();
            (0..d).for_each(|r| v[r * b + k] -= p * v[r * b + j]);
        }
        let norm = (0..d).map(|r| v[r * b + k].powi(2)).sum::<f64>().sqrt();
        let inv = if norm > 1e-300 { 1.0 / norm } else { 0.0 };
        (0..d).for_each(|r| v[r * b + k] *= inv);
    }
}

/// Cyclic Jacobi eigen-decomposition of the symmetric row-major `a` `[n, n]`: eigenvalues in
/// descending order and the matching unit eigenvectors as the columns of a row-major `[n, n]`.
pub(crate) fn jacobi_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i].powi(2)).sum();
        if off <= 1e-30 * diag || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(&mut a, &mut v, n, p, q);
            }
        }
    }
    sort_eigen(&a, &v, n)
}

/// One Jacobi rotation zeroing `a[p][q]`, accumulated into `v`.
fn rotate(a: &mut [f64], v: &mut [f64], n: usize, p: usize, q: usize) {
    let apq = a[p * n + q];
    if apq == 0.0 {
        return;
    }
    let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let t = if theta == 0.0 { 1.0 } else { t };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    for k in 0..n {
        let (akp, akq) = (a[k * n + p], a[k * n + q]);
        a[k * n + p] = c * akp - s * akq;
        a[k * n + q] = s * akp + c * akq;
    }
    for k in 0..n {
        let (apk, aqk) = (a[p * n + k], a[q * n + k]);
        a[p * n + k] = c * apk - s * aqk;
        a[q * n + k] = s * apk + c * aqk;
    }
    for k in 0..n {
        let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
        v[k * n + p] = c * vkp - s * vkq;
        v[k * n + q] = s * vkp + c * vkq;
    }
}

/// Eigenvalues (the diagonal of `a`) sorted descending with their columns of `v`.
fn sort_eigen(a: &[f64], v: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let vals = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (new, &old) in order.iter().enumerate() {
        (0..n).for_each(|r| vecs[r * n + new] = v[r * n + old]);
    }
    (vals, vecs)
}

/// Flips `c` so that its largest-|entry| (the first of equals) is positive.
fn fix_sign(c: &mut [f64]) {
    let mut best = 0usize;
    for (i, v) in c.iter().enumerate() {
        if v.abs() > c[best].abs() {
            best = i;
        }
    }
    if c.get(best).is_some_and(|&v| v < 0.0) {
        c.iter_mut().for_each(|v| *v = -*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenpairs_of_a_known_matrix() {
        // eigenvalues 3 (1,1)/√2 and 1 (1,−1)/√2
        let (vals, vecs) = jacobi_eigen(vec![2.0, 1.0, 1.0, 2.0], 2);
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        assert!((vecs[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((vecs[0] * vecs[2] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn subspace_iteration_matches_jacobi_on_a_wide_matrix() {
        let d = 40;
        let mut rng = Rng::new(3);
        let a: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
        let c = at_b(&a, &a, d, d); // aᵀa: symmetric positive semi-definite
        let (_, vecs) = jacobi_eigen(c.clone(), d);
        let fast = subspace_top2(&c, d);
        for (k, f) in fast.iter().enumerate() {
            let dotp: f64 = (0..d).map(|r| vecs[r * d + k] * f[r]).sum();
            assert!((dotp.abs() - 1.0).abs() < 1e-9, "component {k}: {dotp}");
        }
    }

    #[test]
    fn degenerate_inputs_give_zeros() {
        assert!(pca2(&Features::new(0, 3, vec![]).unwrap()).is_empty());
        assert_eq!(
            pca2(&Features::new(1, 3, vec![1.0; 3]).unwrap()),
            vec![[0.0; 2]]
        );
        assert_eq!(
            pca2(&Features::new(2, 0, vec![]).unwrap()),
            vec![[0.0; 2]; 2]
        );
        // dim 1: the second component does not exist
        let s = pca2(&Features::new(3, 1, vec![0.0, 1.0, 5.0]).unwrap());
        assert!(s.iter().all(|p| p[1] == 0.0) && s[2][0] > 0.0);
    }

    #[test]
    fn a_line_scores_along_the_first_component_with_the_fixed_sign() {
        // points t·(−3, 1, 0): the largest loading (−3) becomes positive, so t < 0 scores > 0
        let data: Vec<f32> = (0..5)
            .flat_map(|t| [-3.0 * t as f32, t as f32, 0.0])
            .collect();
        let s = pca2(&Features::new(5, 3, data).unwrap());
        let step = 10f32.sqrt();
        for (t, p) in s.iter().enumerate() {
            assert!((p[0] - (2.0 - t as f32) * step).abs() < 1e-5, "{t}: {p:?}");
            assert!(p[1].abs() < 1e-5);
        }
    }

    #[test]
    fn non_finite_values_are_read_as_zero() {
        let clean = Features::new(3, 2, vec![0.0, 1.0, 2.0, 0.0, 4.0, 1.0]).unwrap();
        let dirty = Features::new(3, 2, vec![f32::NAN, 1.0, 2.0, 0.0, 4.0, 1.0]).unwrap();
        assert_eq!(pca2(&clean), pca2(&dirty));
    }
}
