//! Fixed 2-D positional embeddings: PyTorch-exact bicubic resize weights (align_corners=False,
//! A = −0.75, border-clamped taps) used to resize a checkpoint's grid (method.md §1.2 step 2).

/// Cubic convolution kernel of PyTorch's `upsample_bicubic2d` (A = −0.75).
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Dense `[out, in]` matrix `M` such that resizing a length-`n_in` signal to `n_out` samples
/// with PyTorch bicubic (align_corners=False) is `M · x`. Applied along rows and columns it
/// reproduces `F.interpolate(..., mode="bicubic", align_corners=False)` exactly.
pub fn bicubic_matrix(n_in: usize, n_out: usize) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let real = scale * (o as f64 + 0.5) - 0.5;
        let base = real.floor();
        let w = cubic_weights(real - base);
        for (k, wk) in w.iter().enumerate() {
            let idx = (base as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            m[o * n_in + idx] += wk;
        }
    }
    m
}

/// Resizes a `[h, w, d]` grid to `[h2, w2, d]` on the host with PyTorch bicubic semantics.
pub fn resize_grid(
    grid: &[f32],
    (h, w, d): (usize, usize, usize),
    (h2, w2): (usize, usize),
) -> Vec<f32> {
    let mh = bicubic_matrix(h, h2);
    let mw = bicubic_matrix(w, w2);
    let mut rows = vec![0.0f64; h2 * w * d];
    for o in 0..h2 {
        for i in 0..h {
            let c = mh[o * h + i];
            if c != 0.0 {
                for j in 0..w * d {
                    rows[o * w * d + j] += c * grid[i * w * d + j] as f64;
                }
            }
        }
    }
    let mut out = vec![0.0f32; h2 * w2 * d];
    for r in 0..h2 {
        for o in 0..w2 {
            for i in 0..w {
                let c = mw[o * w + i];
                if c != 0.0 {
                    for k in 0..d {
                        out[(r * w2 + o) * d + k] += (c * rows[(r * w + i) * d + k]) as f32;
                    }
                }
            }
        }
    }
    out
}

/// MAE-layout 2-D sin-cos embedding `[h, w, d]`: first half of the channels encodes the column,
/// second half the row (method.md §6.1). Used for freshly initialised models only.
pub fn sincos_2d(h: usize, w: usize, d: usize) -> Vec<f32> {
    let quarter = d / 4;
    let mut out = vec![0.0f32; h * w * d];
    for r in 0..h {
        for c in 0..w {
            let base = (r * w + c) * d;
            for (half, pos) in [(0, c), (1, r)] {
                for i in 0..quarter {
                    let omega = 1.0 / 10000f64.powf(i as f64 / quarter as f64);
                    let v = pos as f64 * omega;
                    out[base + half * 2 * quarter + i] = v.sin() as f32;
                    out[base + half * 2 * quarter + quarter + i] = v.cos() as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let m = bicubic_matrix(5, 5);
        for o in 0..5 {
            for i in 0..5 {
                assert!((m[o * 5 + i] - if o == i { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn rows_sum_to_one_and_constants_are_preserved() {
        for (a, b) in [(4, 6), (14, 7), (7, 3), (2, 9)] {
            let m = bicubic_matrix(a, b);
            for o in 0..b {
                let s: f64 = m[o * a..(o + 1) * a].iter().sum();
                assert!((s - 1.0).abs() < 1e-12, "{a}->{b} row {o} sums to {s}");
            }
        }
    }

    #[test]
    fn matches_hand_computed_pytorch_upsample() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0.,1.,2.,3.]]]]), size=(1,8),
        // mode="bicubic", align_corners=False) uses border-clamped
        // taps; the first output sample is checked against the kernel definition by hand.
        let m = bicubic_matrix(4, 8);
        let x = [0.0, 1.0, 2.0, 3.0];
        let y: Vec<f64> = (0..8)
            .map(|o| (0..4).map(|i| m[o * 4 + i] * x[i]).sum())
            .collect();
        // a mirror-symmetric input stays mirror-symmetric
        let s = [1.0, 3.0, 3.0, 1.0];
        let z: Vec<f64> = (0..8)
            .map(|o| (0..4).map(|i| m[o * 4 + i] * s[i]).sum())
            .collect();
        for o in 0..4 {
            assert!((z[o] - z[7 - o]).abs() < 1e-12);
        }
        // first sample: real=-0.25, taps at -2,-1,0,1 clamped to 0,0,0,1
        let w = cubic_weights(0.75);
        assert!((y[0] - w[3]).abs() < 1e-12);
    }
}
