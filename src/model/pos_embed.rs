//! Fixed 2-D positional embeddings: PyTorch-exact resize matrices for both bicubic conventions
//! (plain and `antialias=True`) that resize a checkpoint's grid (method.md §1.2 step 2).

use serde::{Deserialize, Serialize};

/// How a positional-embedding grid is resized to another patch grid (method.md §1.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PosInterp {
    /// `F.interpolate(mode="bicubic", align_corners=False)`: Keys A = −0.75, four
    /// border-clamped taps. The MAE / data2vec 2.0 / MIM-Refiner reference code.
    #[default]
    Bicubic,
    /// `F.interpolate(mode="bicubic", antialias=True, align_corners=False)`: Keys a = −0.5,
    /// support widened by the downscale factor, weights normalised, no taps outside the grid.
    /// timm's `resample_abs_pos_embed` and `dynamic_img_size`.
    BicubicAntialias,
}

impl PosInterp {
    /// The name used by `--pos-interp`, `model.pos_interp` and safetensors metadata.
    pub fn name(self) -> &'static str {
        match self {
            PosInterp::Bicubic => "bicubic",
            PosInterp::BicubicAntialias => "bicubic-antialias",
        }
    }

    /// Parses a [`PosInterp::name`]; the error lists the valid names.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        [PosInterp::Bicubic, PosInterp::BicubicAntialias]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown positional-embedding resize `{s}`: use bicubic or bicubic-antialias"
                )
            })
    }
}

/// Dense `[out, in]` matrix `M` such that resizing a length-`n_in` signal to `n_out` samples
/// with `interp` is `M · x` (both conventions are separable: rows, then columns).
pub fn resize_matrix(interp: PosInterp, n_in: usize, n_out: usize) -> Vec<f64> {
    match interp {
        PosInterp::Bicubic => bicubic_matrix(n_in, n_out),
        PosInterp::BicubicAntialias => bicubic_antialias_matrix(n_in, n_out),
    }
}

/// Keys' cubic convolution kernel with parameter `a`, evaluated at distance `x`.
fn keys_cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Weights of the four taps of PyTorch's `upsample_bicubic2d` (A = −0.75) at fraction `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    [t + 1.0, t, 1.0 - t, 2.0 - t].map(|x| keys_cubic(x, A))
}

/// Plain PyTorch bicubic (align_corners=False): source coordinate `(o + 0.5)·n_in/n_out − 0.5`,
/// four taps with A = −0.75, indices clamped to the border. Applied along rows and columns it
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

/// PyTorch's antialiased bicubic (`_compute_indices_weights_aa`, align_corners=False): with
/// `scale = n_in/n_out` and `support = 2·max(scale, 1)`, output `o` centred at
/// `c = scale·(o + 0.5)` takes the inputs `xmin..xmin+xsize` (`xmin = max(⌊c − support + ½⌋, 0)`,
/// `xsize = min(⌊c + support + ½⌋, n_in) − xmin`) with weights `keys(a = −0.5)` at
/// `(i − c + ½)/max(scale, 1)`, normalised to sum 1. Taps outside the grid are dropped, not
/// clamped.
pub fn bicubic_antialias_matrix(n_in: usize, n_out: usize) -> Vec<f64> {
    const A: f64 = -0.5;
    let mut m = vec![0.0; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    let stretch = scale.max(1.0);
    let support = 2.0 * stretch;
    for o in 0..n_out {
        let center = scale * (o as f64 + 0.5);
        // `as usize` truncates like ATen's int64 cast; negatives saturate to 0 (= its max(·, 0))
        let xmin = (center - support + 0.5) as usize;
        let xmax = ((center + support + 0.5) as usize).min(n_in);
        let row = &mut m[o * n_in..(o + 1) * n_in];
        for (i, w) in row.iter_mut().enumerate().take(xmax).skip(xmin) {
            *w = keys_cubic((i as f64 - center + 0.5) / stretch, A);
        }
        let total: f64 = row.iter().sum();
        if total != 0.0 {
            row.iter_mut().for_each(|w| *w /= total);
        }
    }
    m
}

/// Resizes a `[h, w, d]` grid to `[h2, w2, d]` on the host with `interp` (float64 sums).
pub fn resize_grid(
    grid: &[f32],
    interp: PosInterp,
    (h, w, d): (usize, usize, usize),
    (h2, w2): (usize, usize),
) -> Vec<f32> {
    let x: Vec<f64> = grid.iter().map(|&v| v as f64).collect();
    // rows: [h, w·d] → [h2, w·d]; columns: each of the h2 rows [w, d] → [w2, d]
    let rows = apply_matrix(&resize_matrix(interp, h, h2), h, &x, w * d);
    let mw = resize_matrix(interp, w, w2);
    rows.chunks(w * d)
        .flat_map(|row| apply_matrix(&mw, w, row, d))
        .map(|v| v as f32)
        .collect()
}

/// `M · X` for `M [n_out, n_in]` and `X [n_in, width]` (row-major), in float64.
fn apply_matrix(m: &[f64], n_in: usize, x: &[f64], width: usize) -> Vec<f64> {
    let n_out = m.len() / n_in;
    let mut out = vec![0.0; n_out * width];
    for (o, dst) in out.chunks_mut(width).enumerate() {
        for (i, src) in x.chunks(width).enumerate() {
            let c = m[o * n_in + i];
            if c != 0.0 {
                dst.iter_mut().zip(src).for_each(|(y, v)| *y += c * v);
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
pub(crate) mod tests {
    use super::*;
    use crate::host::{HostTensor, TensorMap};

    const BOTH: [PosInterp; 2] = [PosInterp::Bicubic, PosInterp::BicubicAntialias];

    /// tools/make_pos_embed_fixtures.py: `grid [h, w, d]` and `<convention>.<h2>x<w2>` resizes
    /// by `F.interpolate` (`bicubic`, `bicubic-antialias`) and timm's `resample_abs_pos_embed`
    /// (`timm`).
    pub(crate) fn pytorch_fixture() -> TensorMap {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pos_embed_resize.safetensors");
        crate::checkpoint::st::read(&path)
            .expect("fixture (tools/make_pos_embed_fixtures.py)")
            .tensors
    }

    /// The fixture's cases: (key, convention, output grid, expected `[h2, w2, d]`).
    pub(crate) fn cases(f: &TensorMap) -> Vec<(String, PosInterp, (usize, usize), HostTensor)> {
        let mut v: Vec<_> = f
            .iter()
            .filter(|(k, _)| *k != "grid")
            .map(|(k, t)| {
                let (prefix, _) = k.split_once('.').expect("key <convention>.<h>x<w>");
                let interp = match prefix {
                    "timm" => PosInterp::BicubicAntialias,
                    other => PosInterp::parse(other).expect("known convention"),
                };
                (k.clone(), interp, (t.shape[0], t.shape[1]), t.clone())
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn both_conventions_match_pytorch_up_and_down() {
        let f = pytorch_fixture();
        let grid = &f["grid"];
        let [h, w, d] = grid.shape[..] else {
            panic!("grid must be [h, w, d]")
        };
        let cases = cases(&f);
        for interp in BOTH {
            let sizes: Vec<_> = cases
                .iter()
                .filter(|c| c.1 == interp)
                .map(|c| c.2)
                .collect();
            assert!(
                sizes.iter().any(|&(a, b)| a < h && b < w),
                "{interp:?}: no downsampling case"
            );
            assert!(
                sizes.iter().any(|&(a, b)| a > h && b > w),
                "{interp:?}: no upsampling case"
            );
        }
        let mut worst = std::collections::BTreeMap::new();
        for (key, interp, size, want) in &cases {
            let got = HostTensor::new(
                vec![size.0, size.1, d],
                resize_grid(&grid.data, *interp, (h, w, d), *size),
            )
            .unwrap();
            let diff = got.max_abs_diff(want);
            assert!(diff <= 1e-5, "{key}: max abs diff {diff} to PyTorch");
            let source = key.split_once('.').map_or("", |k| k.0);
            let w: &mut f32 = worst.entry(source).or_default();
            *w = w.max(diff);
        }
        eprintln!("pos-embed resize vs PyTorch, max abs diff by source: {worst:?}");
    }

    #[test]
    fn the_conventions_differ_where_pytorch_says_they_do() {
        // guards the fixture itself: antialias must change both up- and downsampling
        let f = pytorch_fixture();
        for (key, interp, size, want) in cases(&f) {
            let Some(other) = f.get(&format!("bicubic.{}x{}", size.0, size.1)) else {
                continue;
            };
            if interp == PosInterp::BicubicAntialias {
                assert!(
                    want.max_abs_diff(other) > 1e-4,
                    "{key} equals plain bicubic"
                );
            }
        }
    }

    #[test]
    fn same_size_is_identity() {
        for interp in BOTH {
            let m = resize_matrix(interp, 5, 5);
            for o in 0..5 {
                for i in 0..5 {
                    let want = if o == i { 1.0 } else { 0.0 };
                    assert!((m[o * 5 + i] - want).abs() < 1e-12, "{interp:?}");
                }
            }
        }
    }

    #[test]
    fn rows_sum_to_one_and_constants_are_preserved() {
        for interp in BOTH {
            for (a, b) in [(4, 6), (14, 7), (7, 3), (2, 9), (14, 1)] {
                let m = resize_matrix(interp, a, b);
                for o in 0..b {
                    let s: f64 = m[o * a..(o + 1) * a].iter().sum();
                    assert!(
                        (s - 1.0).abs() < 1e-12,
                        "{interp:?} {a}->{b} row {o} sums to {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_agree_across_cli_config_and_metadata() {
        use clap::ValueEnum;
        for interp in BOTH {
            let clap_name = interp.to_possible_value().unwrap().get_name().to_string();
            let serde_name = serde_json::to_value(interp).unwrap();
            assert_eq!(clap_name, interp.name());
            assert_eq!(serde_name, interp.name());
            assert_eq!(PosInterp::parse(interp.name()).unwrap(), interp);
        }
        let err = PosInterp::parse("bilinear").unwrap_err().to_string();
        assert!(
            err.contains("bilinear") && err.contains("bicubic-antialias"),
            "{err}"
        );
    }
}
