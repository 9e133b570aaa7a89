//! The per-view augmentations of method.md §4.1 as pure functions on 8-bit RGB images, each random
//! draw taken from a caller-supplied `Rng` and reported in `ViewParams` (torchvision / PIL semantics).

pub use super::resize::{CropBox, resize_bicubic};
use crate::rng::Rng;
use image::RgbImage;

/// Colour-jitter draws: the order of the four ops (0 brightness, 1 contrast, 2 saturation, 3 hue)
/// and each factor, `None` when that strength is 0 (torchvision skips the op then).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterParams {
    pub order: [usize; 4],
    pub brightness: Option<f32>,
    pub contrast: Option<f32>,
    pub saturation: Option<f32>,
    pub hue: Option<f32>,
}

/// Everything drawn for one view, for tests and previews.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewParams {
    pub crop: CropBox,
    pub flipped: bool,
    pub jitter: Option<JitterParams>,
    pub grayscale: bool,
    pub blur_sigma: Option<f32>,
    pub solarized: bool,
}

/// True with probability `p` (one uniform draw, taken even when `p` is 0 or 1 so streams line up).
pub fn coin(rng: &mut Rng, p: f64) -> bool {
    rng.uniform() < p
}

/// RandomResizedCrop parameters exactly as torchvision's `get_params`: 10 attempts drawing the
/// area fraction from `scale` and a log-uniform aspect ratio from `ratio`, else a centre crop
/// clamped to the ratio range (method.md §4.1). Python's `round` is round-half-to-even.
pub fn rrc_params(
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut Rng,
) -> CropBox {
    let (wf, hf) = (width as f64, height as f64);
    let area = wf * hf;
    let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.range(scale[0], scale[1]);
        let aspect = rng.range(lr0, lr1).exp();
        let w = (target * aspect).sqrt().round_ties_even();
        let h = (target / aspect).sqrt().round_ties_even();
        if w > 0.0 && w <= wf && h > 0.0 && h <= hf {
            let (w, h) = (w as u32, h as u32);
            let top = rng.below((height - h + 1) as usize) as u32;
            let left = rng.below((width - w + 1) as usize) as u32;
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    centre_crop_in_ratio(width, height, ratio)
}

/// torchvision's fallback: the whole image, narrowed to the nearest allowed aspect ratio, centred.
fn centre_crop_in_ratio(width: u32, height: u32, ratio: [f64; 2]) -> CropBox {
    let in_ratio = width as f64 / height.max(1) as f64;
    let (w, h) = if in_ratio < ratio[0] {
        (
            width,
            ((width as f64 / ratio[0]).round_ties_even() as u32).clamp(1, height.max(1)),
        )
    } else if in_ratio > ratio[1] {
        (
            ((height as f64 * ratio[1]).round_ties_even() as u32).clamp(1, width.max(1)),
            height,
        )
    } else {
        (width, height)
    };
    let (w, h) = (w.min(width), h.min(height));
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// Mirrors the image left–right in place.
pub fn hflip(img: &mut RgbImage) {
    let w = img.width() as usize;
    if w == 0 {
        return;
    }
    let buf: &mut [u8] = img;
    for row in buf.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (w - 1 - x) * 3 + c);
            }
        }
    }
}

/// ITU-R 601-2 luma, L = R·299/1000 + G·587/1000 + B·114/1000, rounded (PIL's `convert("L")`).
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * r as u32 + 587 * g as u32 + 114 * b as u32 + 500) / 1000) as u8
}

/// PIL's `Image.blend(base, v, f)` for one value: `base + f (v - base)`, clipped and truncated.
fn blend(base: f32, v: u8, f: f32) -> u8 {
    let t = base + f * (v as f32 - base);
    if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// Brightness: blend with black (PIL `ImageEnhance.Brightness`).
pub fn adjust_brightness(img: &mut RgbImage, f: f32) {
    let buf: &mut [u8] = img;
    buf.iter_mut().for_each(|v| *v = blend(0.0, *v, f));
}

/// Contrast: blend with the rounded mean of the grayscale image (PIL `ImageEnhance.Contrast`).
pub fn adjust_contrast(img: &mut RgbImage, f: f32) {
    let buf: &mut [u8] = img;
    let n = (buf.len() / 3).max(1) as f64;
    let sum: u64 = buf
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]) as u64)
        .sum();
    let mean = (sum as f64 / n + 0.5).floor() as f32;
    buf.iter_mut().for_each(|v| *v = blend(mean, *v, f));
}

/// Saturation: blend each pixel with its grayscale value (PIL `ImageEnhance.Color`).
pub fn adjust_saturation(img: &mut RgbImage, f: f32) {
    let buf: &mut [u8] = img;
    for p in buf.chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]) as f32;
        p.iter_mut().for_each(|v| *v = blend(l, *v, f));
    }
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let d = max - min;
    let s = if max > 0.0 { d / max } else { 0.0 };
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    (h, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Hue: rotate the HSV hue by `shift` (a fraction of the circle, in [-0.5, 0.5]); torchvision
/// does this on PIL's 8-bit HSV, here it is done in floats and rounded once.
pub fn adjust_hue(img: &mut RgbImage, shift: f32) {
    if shift == 0.0 {
        return;
    }
    let buf: &mut [u8] = img;
    for p in buf.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(
            p[0] as f32 / 255.0,
            p[1] as f32 / 255.0,
            p[2] as f32 / 255.0,
        );
        let rgb = hsv_to_rgb(h + shift, s, v);
        for c in 0..3 {
            p[c] = (rgb[c] * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// A factor uniform in [max(0, 1 − x), 1 + x], or `None` when `x` is 0.
fn factor(x: f64, rng: &mut Rng) -> Option<f32> {
    (x > 0.0).then(|| rng.range((1.0 - x).max(0.0), 1.0 + x) as f32)
}

/// ColorJitter draws as torchvision: a random permutation of the four ops, then brightness,
/// contrast, saturation factors and a hue shift in [−h, h] (method.md §4.1: 0.4, 0.4, 0.2, 0.1).
pub fn jitter_params(
    brightness: f64,
    contrast: f64,
    saturation: f64,
    hue: f64,
    rng: &mut Rng,
) -> JitterParams {
    let mut order = [0usize, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let brightness = factor(brightness, rng);
    let contrast = factor(contrast, rng);
    let saturation = factor(saturation, rng);
    let hue = (hue > 0.0).then(|| rng.range(-hue, hue) as f32);
    JitterParams {
        order,
        brightness,
        contrast,
        saturation,
        hue,
    }
}

/// Applies the jitter ops in the drawn order.
pub fn apply_jitter(img: &mut RgbImage, j: &JitterParams) {
    for &op in &j.order {
        match (op, j.brightness, j.contrast, j.saturation, j.hue) {
            (0, Some(f), ..) => adjust_brightness(img, f),
            (1, _, Some(f), ..) => adjust_contrast(img, f),
            (2, _, _, Some(f), _) => adjust_saturation(img, f),
            (3, .., Some(h)) => adjust_hue(img, h),
            _ => {}
        }
    }
}

/// RandomGrayscale's conversion: luma replicated to three channels.
pub fn grayscale(img: &mut RgbImage) {
    let buf: &mut [u8] = img;
    for p in buf.chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p.fill(l);
    }
}

/// Normalised 1-D Gaussian of radius ceil(3σ).
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.into_iter().map(|v| v / sum).collect()
}

/// Gaussian blur with standard deviation `sigma` (PIL `GaussianBlur(radius=σ)`), separable, with
/// edge pixels repeated.
pub fn gaussian_blur(img: &mut RgbImage, sigma: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 || sigma <= 0.0 {
        return;
    }
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as i64;
    let clamp = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
    let buf: &mut [u8] = img;
    let mut tmp = vec![0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (t, &kv) in k.iter().enumerate() {
                let p = (y * w + clamp(x as i64 + t as i64 - r, w)) * 3;
                (0..3).for_each(|c| acc[c] += buf[p + c] as f32 * kv);
            }
            tmp[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (t, &kv) in k.iter().enumerate() {
                let p = (clamp(y as i64 + t as i64 - r, h) * w + x) * 3;
                (0..3).for_each(|c| acc[c] += tmp[p + c] * kv);
            }
            for c in 0..3 {
                buf[(y * w + x) * 3 + c] = acc[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Solarize (PIL `ImageOps.solarize`): every value ≥ `threshold` becomes 255 − value.
pub fn solarize(img: &mut RgbImage, threshold: u8) {
    let buf: &mut [u8] = img;
    buf.iter_mut()
        .filter(|v| **v >= threshold)
        .for_each(|v| *v = 255 - *v);
}

/// `ToTensor` + `Normalize`: CHW floats `(v/255 − mean) / std`.
pub fn normalize_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (p, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + p] = (px[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// Inverse of [`normalize_chw`] for a `width × height` view (rounded, clipped to 8 bits).
pub fn denormalize_chw(
    chw: &[f32],
    width: u32,
    height: u32,
    mean: [f32; 3],
    std: [f32; 3],
) -> anyhow::Result<RgbImage> {
    let plane = (width * height) as usize;
    anyhow::ensure!(
        chw.len() == 3 * plane,
        "view has {} values, expected 3×{height}×{width} = {}",
        chw.len(),
        3 * plane
    );
    let mut out = RgbImage::new(width, height);
    let buf: &mut [u8] = &mut out;
    for (p, px) in buf.chunks_exact_mut(3).enumerate() {
        for c in 0..3 {
            px[c] = ((chw[c * plane + p] * std[c] + mean[c]) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut r = Rng::new(seed);
        RgbImage::from_fn(w, h, |_, _| {
            image::Rgb([r.below(256) as u8, r.below(256) as u8, r.below(256) as u8])
        })
    }

    #[test]
    fn rrc_area_and_ratio_stay_in_bounds_and_spread_over_the_range() {
        let (w, h) = (300u32, 300u32);
        for (lo, hi) in [(0.25, 1.0), (0.05, 0.25)] {
            let mut rng = Rng::new(7);
            let (mut low, mut high) = (0, 0);
            let draws = 2000;
            for _ in 0..draws {
                let c = rrc_params(w, h, [lo, hi], [3.0 / 4.0, 4.0 / 3.0], &mut rng);
                assert!(c.left + c.width <= w && c.top + c.height <= h, "{c:?}");
                let (cw, ch) = (c.width as f64, c.height as f64);
                let frac = cw * ch / (w * h) as f64;
                // rounding each side by at most 0.5 px moves the area by at most (cw + ch) / 2 + 1/4
                let slack = (0.5 * (cw + ch) + 0.25) / (w * h) as f64;
                assert!(
                    ((lo - slack)..=(hi + slack)).contains(&frac),
                    "area fraction {frac} outside [{lo}, {hi}]"
                );
                assert!(
                    (cw + 0.5) / (ch - 0.5) >= 0.75 && (cw - 0.5) / (ch + 0.5) <= 4.0 / 3.0,
                    "{c:?}"
                );
                low += (frac < lo + (hi - lo) / 3.0) as usize;
                high += (frac > lo + 2.0 * (hi - lo) / 3.0) as usize;
            }
            assert!(
                low > draws / 10 && high > draws / 10,
                "scale [{lo}, {hi}]: low {low}, high {high}"
            );
        }
    }

    #[test]
    fn rrc_falls_back_to_a_centre_crop_in_the_ratio_range() {
        let mut rng = Rng::new(1);
        let c = rrc_params(1000, 10, [0.9, 1.0], [0.75, 4.0 / 3.0], &mut rng);
        assert_eq!(
            c,
            CropBox {
                top: 0,
                left: 493,
                height: 10,
                width: 13
            }
        );
        let c = rrc_params(10, 1000, [0.9, 1.0], [0.75, 4.0 / 3.0], &mut rng);
        assert_eq!(
            c,
            CropBox {
                top: 493,
                left: 0,
                height: 13,
                width: 10
            }
        );
    }

    #[test]
    fn hflip_mirrors_and_twice_is_identity() {
        let img = noise(5, 3, 4);
        let mut f = img.clone();
        hflip(&mut f);
        assert_eq!(f.get_pixel(0, 1), img.get_pixel(4, 1));
        assert_eq!(f.get_pixel(2, 2), img.get_pixel(2, 2));
        hflip(&mut f);
        assert_eq!(f, img);
    }

    #[test]
    fn solarize_inverts_exactly_the_pixels_at_or_above_128() {
        let img = RgbImage::from_fn(256, 1, |x, _| image::Rgb([x as u8, 255 - x as u8, 128]));
        let mut s = img.clone();
        solarize(&mut s, 128);
        for (a, b) in img.as_raw().iter().zip(s.as_raw()) {
            let expect = if *a >= 128 { 255 - a } else { *a };
            assert_eq!(*b, expect, "value {a}");
        }
        assert_eq!(s.get_pixel(0, 0).0, [0, 0, 127]);
        assert_eq!(s.get_pixel(127, 0).0, [127, 127, 127]);
    }

    fn hf_energy(img: &RgbImage) -> f64 {
        let (w, h) = img.dimensions();
        let mut e = 0.0;
        for y in 0..h {
            for x in 0..w {
                let v = img.get_pixel(x, y)[0] as f64;
                if x + 1 < w {
                    e += (v - img.get_pixel(x + 1, y)[0] as f64).powi(2);
                }
                if y + 1 < h {
                    e += (v - img.get_pixel(x, y + 1)[0] as f64).powi(2);
                }
            }
        }
        e
    }

    #[test]
    fn blur_lowers_high_frequency_energy_more_for_larger_sigma() {
        let board = RgbImage::from_fn(32, 32, |x, y| {
            let v = if (x / 2 + y / 2).is_multiple_of(2) {
                0
            } else {
                255
            };
            image::Rgb([v, v, v])
        });
        let e0 = hf_energy(&board);
        let mut prev = e0;
        for sigma in [0.5f32, 1.0, 2.0] {
            let mut b = board.clone();
            gaussian_blur(&mut b, sigma);
            let e = hf_energy(&b);
            assert!(e < 0.8 * prev, "sigma {sigma}: energy {e} vs {prev}");
            prev = e;
        }
        let mut flat = RgbImage::from_pixel(9, 9, image::Rgb([50, 60, 70]));
        gaussian_blur(&mut flat, 1.7);
        assert!(flat.pixels().all(|p| p.0 == [50, 60, 70]));
    }

    #[test]
    fn grayscale_gives_equal_channels_with_601_luma() {
        let mut img = noise(16, 16, 5);
        grayscale(&mut img);
        assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(255, 255, 255), 255);
    }

    #[test]
    fn jitter_factors_are_in_range_and_order_is_a_permutation() {
        let mut rng = Rng::new(9);
        let mut seen_first = [false; 4];
        for _ in 0..1000 {
            let j = jitter_params(0.4, 0.4, 0.2, 0.1, &mut rng);
            let mut o = j.order;
            seen_first[o[0]] = true;
            o.sort();
            assert_eq!(o, [0, 1, 2, 3]);
            let (b, c, s, h) = (
                j.brightness.unwrap(),
                j.contrast.unwrap(),
                j.saturation.unwrap(),
                j.hue.unwrap(),
            );
            assert!(
                (0.6..=1.4).contains(&b) && (0.6..=1.4).contains(&c),
                "{j:?}"
            );
            assert!(
                (0.8..=1.2).contains(&s) && (-0.1..=0.1).contains(&h),
                "{j:?}"
            );
        }
        assert!(
            seen_first.iter().all(|&s| s),
            "every op should come first sometimes"
        );
        let j = jitter_params(0.0, 1.5, 0.0, 0.0, &mut rng);
        assert_eq!((j.brightness, j.saturation, j.hue), (None, None, None));
        assert!((0.0..=2.5).contains(&j.contrast.unwrap()));
    }

    #[test]
    fn jitter_ops_behave_like_pil() {
        let img = noise(12, 12, 6);
        let mut same = img.clone();
        adjust_brightness(&mut same, 1.0);
        adjust_contrast(&mut same, 1.0);
        adjust_saturation(&mut same, 1.0);
        assert_eq!(same, img);
        let mut flat = img.clone();
        adjust_contrast(&mut flat, 0.0);
        let v = flat.get_pixel(0, 0)[0];
        assert!(flat.as_raw().iter().all(|&x| x == v));
        let mut grey = img.clone();
        adjust_saturation(&mut grey, 0.0);
        assert!(grey.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        let mut dark = img.clone();
        adjust_brightness(&mut dark, 0.5);
        assert!(
            dark.as_raw()
                .iter()
                .zip(img.as_raw())
                .all(|(d, s)| *d == s / 2)
        );
        let mut hue = img.clone();
        adjust_hue(&mut hue, 0.5);
        assert_ne!(hue, img);
        adjust_hue(&mut hue, -0.5);
        assert!(
            hue.as_raw()
                .iter()
                .zip(img.as_raw())
                .all(|(a, b)| a.abs_diff(*b) <= 2)
        );
    }

    #[test]
    fn normalisation_round_trips() {
        let img = noise(7, 5, 8);
        let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let chw = normalize_chw(&img, mean, std);
        assert_eq!(chw.len(), 3 * 7 * 5);
        let p = img.get_pixel(3, 2);
        assert!((chw[35 + 2 * 7 + 3] - (p[1] as f32 / 255.0 - mean[1]) / std[1]).abs() < 1e-6);
        assert_eq!(denormalize_chw(&chw, 7, 5, mean, std).unwrap(), img);
        assert!(denormalize_chw(&chw, 7, 4, mean, std).is_err());
    }
}
