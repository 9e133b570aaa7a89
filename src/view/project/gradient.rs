//! The t-SNE objective's gradient: attraction over the sparse P, repulsion by Barnes–Hut
//! (quadtree, angle θ) or exactly (O(n²), for tests), and the exact KL divergence.

use super::affinity::SparseP;
use super::par_chunks;
use super::quadtree::QuadTree;

/// Points per parallel task.
const CHUNK: usize = 256;

/// ∂KL/∂yᵢ = 4 (e·Σⱼ pᵢⱼ q̃ᵢⱼ (yᵢ − yⱼ) − Σⱼ q̃ᵢⱼ² (yᵢ − yⱼ) / Z), q̃ = 1/(1+‖yᵢ−yⱼ‖²),
/// Z = Σ_{k≠l} q̃ₖₗ, with the repulsion by Barnes–Hut (`theta` = 0: exact) and `exaggeration` e.
/// `y` must be finite and as long as `p` is wide.
pub fn gradient_bh(p: &SparseP, y: &[[f64; 2]], theta: f64, exaggeration: f64) -> Vec<[f64; 2]> {
    let tree = QuadTree::new(y);
    gradient_with(p, y, exaggeration, tree.order(), |i| {
        tree.repulsion(i, theta)
    })
}

/// [`gradient_bh`] with the exact O(n²) repulsion.
pub fn gradient_exact(p: &SparseP, y: &[[f64; 2]], exaggeration: f64) -> Vec<[f64; 2]> {
    let order: Vec<usize> = (0..y.len()).collect();
    gradient_with(p, y, exaggeration, &order, |i| exact_repulsion(y, i))
}

/// Assembles the gradient from the attraction and a repulsion `(Σ q̃² (yᵢ−yⱼ), Σ q̃)` per point,
/// visiting the points in `order` (tree order keeps a task's cells in cache).
fn gradient_with(
    p: &SparseP,
    y: &[[f64; 2]],
    exaggeration: f64,
    order: &[usize],
    repulsion: impl Fn(usize) -> ([f64; 2], f64) + Sync + Send,
) -> Vec<[f64; 2]> {
    let attract = par_chunks(y.len(), CHUNK, |r| {
        r.map(|i| attraction(p, y, i)).collect::<Vec<_>>()
    });
    let repel = par_chunks(order.len(), CHUNK, |r| {
        order[r]
            .iter()
            .map(|&i| (i, repulsion(i)))
            .collect::<Vec<_>>()
    });
    let repel: Vec<_> = repel.into_iter().flatten().collect();
    let z: f64 = repel.iter().map(|f| f.1.1).sum();
    let inv_z = if z > 0.0 { 1.0 / z } else { 0.0 };
    let mut grad: Vec<[f64; 2]> = attract.into_iter().flatten().collect();
    for (i, (r, _)) in repel {
        grad[i] = [0, 1].map(|c| 4.0 * (exaggeration * grad[i][c] - r[c] * inv_z));
    }
    grad
}

/// Σⱼ pᵢⱼ q̃ᵢⱼ (yᵢ − yⱼ) over row i of P.
fn attraction(p: &SparseP, y: &[[f64; 2]], i: usize) -> [f64; 2] {
    let mut f = [0.0f64; 2];
    for (j, pij) in p.row(i) {
        let d = [y[i][0] - y[j][0], y[i][1] - y[j][1]];
        let m = pij / (1.0 + d[0] * d[0] + d[1] * d[1]);
        f = [f[0] + m * d[0], f[1] + m * d[1]];
    }
    f
}

fn exact_repulsion(y: &[[f64; 2]], i: usize) -> ([f64; 2], f64) {
    let (mut f, mut z) = ([0.0f64; 2], 0.0f64);
    for (j, q) in y.iter().enumerate() {
        if j != i {
            let d = [y[i][0] - q[0], y[i][1] - q[1]];
            let w = 1.0 / (1.0 + d[0] * d[0] + d[1] * d[1]);
            z += w;
            f = [f[0] + w * w * d[0], f[1] + w * w * d[1]];
        }
    }
    (f, z)
}

/// KL(P ‖ Q) = Σ pᵢⱼ ln(pᵢⱼ / qᵢⱼ) with qᵢⱼ = q̃ᵢⱼ / Z, exactly (O(n²)).
pub fn kl_divergence(p: &SparseP, y: &[[f64; 2]]) -> f64 {
    let z: f64 = (0..y.len()).map(|i| exact_repulsion(y, i).1).sum();
    let mut kl = 0.0;
    for i in 0..y.len() {
        for (j, pij) in p.row(i).filter(|e| e.1 > 0.0) {
            let d = [y[i][0] - y[j][0], y[i][1] - y[j][1]];
            let q = 1.0 / (1.0 + d[0] * d[0] + d[1] * d[1]) / z;
            kl += pij * (pij / q).ln();
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::super::Features;
    use super::super::affinity::{joint_probabilities, knn};
    use super::*;
    use crate::rng::Rng;

    fn problem(n: usize) -> (SparseP, Vec<[f64; 2]>) {
        let mut rng = Rng::new(5);
        let data: Vec<f32> = (0..n * 6).map(|_| rng.normal() as f32).collect();
        let p = joint_probabilities(&knn(&Features::new(n, 6, data).unwrap(), 12), 4.0);
        let y = (0..n).map(|_| [rng.normal(), rng.normal()]).collect();
        (p, y)
    }

    #[test]
    fn exact_gradient_matches_finite_differences_of_the_kl() {
        let (p, mut y) = problem(30);
        let g = gradient_exact(&p, &y, 1.0);
        let h = 1e-6;
        for i in [0, 7, 29] {
            for c in 0..2 {
                let v = y[i][c];
                y[i][c] = v + h;
                let up = kl_divergence(&p, &y);
                y[i][c] = v - h;
                let down = kl_divergence(&p, &y);
                y[i][c] = v;
                let fd = (up - down) / (2.0 * h);
                assert!(
                    (fd - g[i][c]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{i},{c}: {fd} vs {}",
                    g[i][c]
                );
            }
        }
    }

    #[test]
    fn barnes_hut_approximates_the_exact_gradient() {
        let (p, y) = problem(300);
        let exact = gradient_exact(&p, &y, 1.0);
        let bh = gradient_bh(&p, &y, 0.5, 1.0);
        let norm = |g: &[[f64; 2]]| {
            g.iter()
                .map(|v| v[0] * v[0] + v[1] * v[1])
                .sum::<f64>()
                .sqrt()
        };
        let diff: Vec<[f64; 2]> = exact
            .iter()
            .zip(&bh)
            .map(|(a, b)| [a[0] - b[0], a[1] - b[1]])
            .collect();
        let rel = norm(&diff) / norm(&exact);
        assert!(rel < 0.05 && rel > 0.0, "relative error {rel}");
    }
}
