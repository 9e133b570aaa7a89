//! Least-squares similarity alignment of one 2-D point set onto another (orthogonal Procrustes
//! with scale), in closed form, so successive projections of a run keep their orientation.

/// Aligns `moving` onto `reference` (same length, same point order) with the least-squares
/// similarity transform: an orthogonal 2×2 map (rotation or reflection), a uniform scale ≥ 0 and
/// a translation, fitted on the pairs where both points are finite and applied to every point.
/// Different lengths or no usable pair → `moving` unchanged; a moving set that is one point
/// repeated maps onto the reference's centroid.
pub fn align(reference: &[[f32; 2]], moving: &[[f32; 2]]) -> Vec<[f32; 2]> {
    align_with(reference, moving, moving)
}

/// Fits the alignment on matched pairs (`reference[i]` ↔ `moving[i]`, e.g. the samples two
/// snapshots share) and applies it to every point of `all` (the moving projection in full).
pub fn align_with(reference: &[[f32; 2]], moving: &[[f32; 2]], all: &[[f32; 2]]) -> Vec<[f32; 2]> {
    match fit(reference, moving) {
        Some(t) if reference.len() == moving.len() => all.iter().map(|p| t.apply(p)).collect(),
        _ => all.to_vec(),
    }
}

/// `p ↦ s·(p − from)·Q + to` with rows as points.
#[derive(Debug, Clone, Copy)]
struct Similarity {
    from: [f64; 2],
    to: [f64; 2],
    /// `s·Q`, row-major.
    m: [[f64; 2]; 2],
}

impl Similarity {
    fn apply(&self, p: &[f32; 2]) -> [f32; 2] {
        let (x, y) = (p[0] as f64 - self.from[0], p[1] as f64 - self.from[1]);
        [
            (x * self.m[0][0] + y * self.m[1][0] + self.to[0]) as f32,
            (x * self.m[0][1] + y * self.m[1][1] + self.to[1]) as f32,
        ]
    }
}

/// The optimal similarity. With centred `M`, `R` and `A = Mᵀ R`, the best orthogonal `Q`
/// maximises `tr(Qᵀ A)`: over rotations the maximum is `‖(a₀₀+a₁₁, a₁₀−a₀₁)‖`, over reflections
/// `‖(a₀₀−a₁₁, a₀₁+a₁₀)‖`; the larger one is the nuclear norm of `A` and the scale is it / ‖M‖².
fn fit(reference: &[[f32; 2]], moving: &[[f32; 2]]) -> Option<Similarity> {
    let pairs: Vec<([f64; 2], [f64; 2])> = reference
        .iter()
        .zip(moving)
        .filter(|(r, m)| r.iter().chain(m.iter()).all(|v| v.is_finite()))
        .map(|(r, m)| (r.map(f64::from), m.map(f64::from)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let to = centroid(pairs.iter().map(|p| p.0), pairs.len());
    let from = centroid(pairs.iter().map(|p| p.1), pairs.len());
    let (mut a, mut norm) = ([[0.0f64; 2]; 2], 0.0f64);
    for (r, m) in &pairs {
        let (r, m) = (
            [r[0] - to[0], r[1] - to[1]],
            [m[0] - from[0], m[1] - from[1]],
        );
        for i in 0..2 {
            for j in 0..2 {
                a[i][j] += m[i] * r[j];
            }
        }
        norm += m[0] * m[0] + m[1] * m[1];
    }
    let m = if norm > 0.0 {
        best_orthogonal(&a).map(|row| row.map(|v| v / norm))
    } else {
        [[0.0; 2]; 2]
    };
    Some(Similarity { from, to, m })
}

/// `σ·Q` where `Q` maximises `tr(Qᵀ a)` and `σ` is that maximum (the nuclear norm of `a`).
fn best_orthogonal(a: &[[f64; 2]; 2]) -> [[f64; 2]; 2] {
    let (rc, rs) = (a[0][0] + a[1][1], a[1][0] - a[0][1]);
    let (fc, fs) = (a[0][0] - a[1][1], a[0][1] + a[1][0]);
    let (rot, refl) = (rc.hypot(rs), fc.hypot(fs));
    if rot >= refl {
        // Q = [[c, −s], [s, c]] with (c, s) ∝ (rc, rs); σ·c = rc, σ·s = rs
        [[rc, -rs], [rs, rc]]
    } else {
        // Q = [[c, s], [s, −c]] with (c, s) ∝ (fc, fs)
        [[fc, fs], [fs, -fc]]
    }
}

fn centroid(points: impl Iterator<Item = [f64; 2]>, n: usize) -> [f64; 2] {
    let s = points.fold([0.0; 2], |s, p| [s[0] + p[0], s[1] + p[1]]);
    [s[0] / n as f64, s[1] / n as f64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_inputs_are_handled() {
        assert!(align(&[], &[]).is_empty());
        let one = align(&[[1.0, 2.0]], &[[5.0, 5.0]]);
        assert_eq!(one, vec![[1.0, 2.0]]);
        assert_eq!(
            align(&[[0.0; 2]], &[[3.0; 2], [4.0; 2]]),
            vec![[3.0; 2], [4.0; 2]]
        );
        let same = align(&[[0.0, 0.0], [2.0, 0.0]], &[[7.0, 7.0], [7.0, 7.0]]);
        assert_eq!(same, vec![[1.0, 0.0], [1.0, 0.0]]);
    }

    #[test]
    fn non_finite_points_are_left_out_of_the_fit() {
        let r = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [9.0, 9.0]];
        let m = [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [f32::NAN, 0.0]];
        let out = align(&r, &m);
        for (o, r) in out.iter().zip(&r).take(3) {
            assert!(
                (o[0] - r[0]).abs() < 1e-6 && (o[1] - r[1]).abs() < 1e-6,
                "{o:?}"
            );
        }
        assert!(out[3][0].is_nan());
    }
}
