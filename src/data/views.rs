//! Multi-crop view configuration (method.md §4.1: two asymmetric BYOL-style global views and ten
//! local views), its validation against the patch size, and the per-sample view generator.

use anyhow::{Result, bail, ensure};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::augment::{self, ViewParams};
use super::resize::resize_centre_crop;
use crate::rng::Rng;

/// ImageNet channel means and standard deviations (method.md §4.1).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// One view's augmentation recipe (every size and probability of method.md §4.1's table).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ViewConfig {
    /// Output side in pixels (square), a multiple of the patch size.
    pub size: usize,
    /// RandomResizedCrop area-fraction range.
    pub scale: [f64; 2],
    /// RandomResizedCrop aspect-ratio range (w/h).
    pub ratio: [f64; 2],
    pub flip_p: f64,
    /// Probability of applying the colour jitter as a whole.
    pub jitter_p: f64,
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
    pub gray_p: f64,
    pub blur_p: f64,
    pub solarize_p: f64,
}

impl ViewConfig {
    /// A §4.1 view: RRC ratio (3/4, 4/3), flip 0.5, jitter p 0.8 (b 0.4, c 0.4, s 0.2, h 0.1), gray 0.2.
    pub fn byol(size: usize, scale: [f64; 2], blur_p: f64, solarize_p: f64) -> Self {
        Self {
            size,
            scale,
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            gray_p: 0.2,
            blur_p,
            solarize_p,
        }
    }
}

/// The views made from each sample: `globals` (one config each), `n_local` copies of `locals`,
/// and the normalisation constants.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct MultiCropConfig {
    pub globals: Vec<ViewConfig>,
    pub locals: ViewConfig,
    pub n_local: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for MultiCropConfig {
    /// method.md §4.1: 2 × 224 global (scale [0.25, 1]; blur 1.0 / 0.1; solarize 0 / 0.2) and
    /// 10 × 96 local (scale [0.05, 0.25], blur 0.5), ImageNet mean/std.
    fn default() -> Self {
        Self::for_image_size(224, 96, 10)
    }
}

impl MultiCropConfig {
    /// The §4.1 recipe with other view sizes (e.g. 32/16 for CIFAR-size images).
    pub fn for_image_size(global: usize, local: usize, n_local: usize) -> Self {
        Self {
            globals: vec![
                ViewConfig::byol(global, [0.25, 1.0], 1.0, 0.0),
                ViewConfig::byol(global, [0.25, 1.0], 0.1, 0.2),
            ],
            locals: ViewConfig::byol(local, [0.05, 0.25], 0.5, 0.0),
            n_local,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Side of the global views (all globals share it once validated).
    pub fn global_size(&self) -> usize {
        self.globals.first().map_or(0, |g| g.size)
    }

    /// Side of the local views.
    pub fn local_size(&self) -> usize {
        self.locals.size
    }

    /// Number of views per sample (globals + locals).
    pub fn n_views(&self) -> usize {
        self.globals.len() + self.n_local
    }

    /// Checks sizes against `patch_size`, probabilities, ranges and normalisation constants; each
    /// error names the field, its value and a fix.
    pub fn validate(&self, patch_size: usize) -> Result<()> {
        ensure!(patch_size > 0, "patch size must be positive, got 0");
        ensure!(
            !self.globals.is_empty(),
            "globals is empty: at least one global view is needed (method.md §4.1 uses 2)"
        );
        let g0 = self.globals[0].size;
        for (i, g) in self.globals.iter().enumerate() {
            check_view(&format!("globals[{i}]"), g, patch_size)?;
            ensure!(
                g.size == g0,
                "globals[{i}].size = {} differs from globals[0].size = {g0}: global views are batched \
                 together, give them one size",
                g.size
            );
        }
        if self.n_local > 0 {
            check_view("locals", &self.locals, patch_size)?;
        }
        for c in 0..3 {
            ensure!(
                self.mean[c].is_finite(),
                "mean[{c}] = {} must be a finite number",
                self.mean[c]
            );
            ensure!(
                self.std[c].is_finite() && self.std[c] > 0.0,
                "std[{c}] = {} must be > 0 (ImageNet: {:?})",
                self.std[c],
                IMAGENET_STD
            );
        }
        Ok(())
    }
}

/// Validates one view config; `name` is its path in the config (`globals[1]`, `locals`).
fn check_view(name: &str, v: &ViewConfig, patch: usize) -> Result<()> {
    if v.size == 0 || !v.size.is_multiple_of(patch) {
        let lo = v.size / patch * patch;
        let hint = if lo == 0 {
            format!("use {patch}")
        } else {
            format!("use {lo} or {}", lo + patch)
        };
        bail!(
            "{name}.size = {} is not divisible by patch size {patch}: {hint}",
            v.size
        );
    }
    let probs = [
        ("flip_p", v.flip_p),
        ("jitter_p", v.jitter_p),
        ("gray_p", v.gray_p),
        ("blur_p", v.blur_p),
        ("solarize_p", v.solarize_p),
    ];
    for (field, p) in probs {
        ensure!(
            (0.0..=1.0).contains(&p),
            "{name}.{field} = {p} is not a probability: use a value in [0, 1]"
        );
    }
    for (field, x) in [
        ("brightness", v.brightness),
        ("contrast", v.contrast),
        ("saturation", v.saturation),
    ] {
        ensure!(
            x.is_finite() && x >= 0.0,
            "{name}.{field} = {x} must be >= 0 (0 disables it)"
        );
    }
    ensure!(
        (0.0..=0.5).contains(&v.hue),
        "{name}.hue = {} must be in [0, 0.5] (0 disables it)",
        v.hue
    );
    let [s0, s1] = v.scale;
    ensure!(
        s0 > 0.0 && s0 <= s1 && s1 <= 1.0,
        "{name}.scale = [{s0}, {s1}] must satisfy 0 < min <= max <= 1 (fractions of the image area)"
    );
    let [r0, r1] = v.ratio;
    ensure!(
        r0 > 0.0 && r0 <= r1 && r1.is_finite(),
        "{name}.ratio = [{r0}, {r1}] must satisfy 0 < min <= max (aspect ratios w/h, e.g. [0.75, 1.3333])"
    );
    Ok(())
}

/// One augmented view as an 8-bit image, in torchvision's order: RandomResizedCrop (bicubic), flip,
/// ColorJitter (p), RandomGrayscale, GaussianBlur σ ~ U(0.1, 2) (p), Solarize at 128 (p).
pub fn augment_image(img: &RgbImage, vc: &ViewConfig, rng: &mut Rng) -> (RgbImage, ViewParams) {
    let crop = augment::rrc_params(img.width(), img.height(), vc.scale, vc.ratio, rng);
    let side = vc.size as u32;
    let mut out = augment::resize_bicubic(img, crop, side, side);
    let flipped = augment::coin(rng, vc.flip_p);
    if flipped {
        augment::hflip(&mut out);
    }
    let jitter = augment::coin(rng, vc.jitter_p)
        .then(|| augment::jitter_params(vc.brightness, vc.contrast, vc.saturation, vc.hue, rng));
    if let Some(j) = &jitter {
        augment::apply_jitter(&mut out, j);
    }
    let grayscale = augment::coin(rng, vc.gray_p);
    if grayscale {
        augment::grayscale(&mut out);
    }
    let blur_sigma = augment::coin(rng, vc.blur_p).then(|| rng.range(0.1, 2.0) as f32);
    if let Some(s) = blur_sigma {
        augment::gaussian_blur(&mut out, s);
    }
    let solarized = augment::coin(rng, vc.solarize_p);
    if solarized {
        augment::solarize(&mut out, 128);
    }
    (
        out,
        ViewParams {
            crop,
            flipped,
            jitter,
            grayscale,
            blur_sigma,
            solarized,
        },
    )
}

/// All views of one image, normalised CHW, in view-major order g1, g2, ℓ1…ℓn (method.md §4.1).
pub fn make_views(
    img: &RgbImage,
    cfg: &MultiCropConfig,
    rng: &mut Rng,
) -> (Vec<Vec<f32>>, Vec<ViewParams>) {
    let configs = cfg
        .globals
        .iter()
        .chain(std::iter::repeat_n(&cfg.locals, cfg.n_local));
    let mut views = Vec::with_capacity(cfg.n_views());
    let mut params = Vec::with_capacity(cfg.n_views());
    for vc in configs {
        let (out, p) = augment_image(img, vc, rng);
        views.push(augment::normalize_chw(&out, cfg.mean, cfg.std));
        params.push(p);
    }
    (views, params)
}

/// Evaluation transform (method.md §5.1): torchvision's `Resize(resize)` (bicubic, shorter side)
/// and `CenterCrop(crop)`, ImageNet normalisation, CHW floats.
pub fn eval_view(img: &RgbImage, resize: u32, crop: u32) -> Vec<f32> {
    eval_view_with(img, resize, crop, IMAGENET_MEAN, IMAGENET_STD)
}

/// [`eval_view`] normalised with `mean`/`std` instead of the ImageNet constants.
pub fn eval_view_with(
    img: &RgbImage,
    resize: u32,
    crop: u32,
    mean: [f32; 3],
    std: [f32; 3],
) -> Vec<f32> {
    augment::normalize_chw(&resize_centre_crop(img, resize, crop), mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reproduces_method_4_1() {
        let c = MultiCropConfig::default();
        assert_eq!(
            (c.globals.len(), c.n_local, c.global_size(), c.local_size()),
            (2, 10, 224, 96)
        );
        assert_eq!((c.globals[0].blur_p, c.globals[0].solarize_p), (1.0, 0.0));
        assert_eq!((c.globals[1].blur_p, c.globals[1].solarize_p), (0.1, 0.2));
        assert_eq!(
            (c.locals.blur_p, c.locals.solarize_p, c.locals.scale),
            (0.5, 0.0, [0.05, 0.25])
        );
        for v in c.globals.iter().chain([&c.locals]) {
            assert_eq!((v.flip_p, v.jitter_p, v.gray_p), (0.5, 0.8, 0.2));
            assert_eq!(
                (v.brightness, v.contrast, v.saturation, v.hue),
                (0.4, 0.4, 0.2, 0.1)
            );
            assert_eq!(v.ratio, [0.75, 4.0 / 3.0]);
        }
        assert_eq!(c.globals[0].scale, [0.25, 1.0]);
        assert_eq!(c.mean, IMAGENET_MEAN);
        c.validate(16).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<MultiCropConfig>(&json).unwrap(), c);
        let partial: MultiCropConfig = serde_json::from_str(r#"{"n_local": 4}"#).unwrap();
        assert_eq!((partial.n_local, partial.global_size()), (4, 224));
    }

    fn err(c: &MultiCropConfig, patch: usize) -> String {
        c.validate(patch).unwrap_err().to_string()
    }

    #[test]
    fn validation_errors_name_the_field_and_the_fix() {
        let mut c = MultiCropConfig::default();
        c.locals.size = 98;
        assert_eq!(
            err(&c, 16),
            "locals.size = 98 is not divisible by patch size 16: use 96 or 112"
        );
        c.validate(14).unwrap();
        assert_eq!(
            err(&MultiCropConfig::default(), 14),
            "locals.size = 96 is not divisible by patch size 14: use 84 or 98"
        );
        let mut c = MultiCropConfig::default();
        c.globals[1].blur_p = 1.5;
        assert!(
            err(&c, 16).starts_with("globals[1].blur_p = 1.5 is not a probability"),
            "{}",
            err(&c, 16)
        );
        let mut c = MultiCropConfig::default();
        c.locals.scale = [0.3, 0.2];
        assert!(
            err(&c, 16).starts_with("locals.scale = [0.3, 0.2] must satisfy"),
            "{}",
            err(&c, 16)
        );
        let mut c = MultiCropConfig::default();
        c.globals[0].ratio = [0.0, 1.0];
        assert!(
            err(&c, 16).starts_with("globals[0].ratio = [0, 1]"),
            "{}",
            err(&c, 16)
        );
        let mut c = MultiCropConfig::default();
        c.globals[1].size = 192;
        assert!(
            err(&c, 16).contains("globals[1].size = 192 differs"),
            "{}",
            err(&c, 16)
        );
        let mut c = MultiCropConfig::default();
        c.std[2] = 0.0;
        assert!(err(&c, 16).starts_with("std[2] = 0"), "{}", err(&c, 16));
        let mut c = MultiCropConfig::default();
        c.locals.size = 8;
        assert_eq!(
            err(&c, 16),
            "locals.size = 8 is not divisible by patch size 16: use 16"
        );
        c.n_local = 0;
        c.validate(16).unwrap();
    }

    #[test]
    fn view_probabilities_match_the_config() {
        let img = RgbImage::from_fn(12, 12, |x, y| {
            image::Rgb([(x * 20) as u8, (y * 20) as u8, 90])
        });
        let cfg = MultiCropConfig::for_image_size(8, 4, 1);
        let mut rng = Rng::new(11);
        let n = 4000;
        let (mut flips, mut jit, mut gray, mut sol, mut blur) = (0, 0, 0, 0, 0);
        for _ in 0..n {
            let (out, p) = augment_image(&img, &cfg.globals[1], &mut rng);
            assert_eq!(out.dimensions(), (8, 8));
            flips += p.flipped as usize;
            jit += p.jitter.is_some() as usize;
            gray += p.grayscale as usize;
            sol += p.solarized as usize;
            blur += p.blur_sigma.is_some() as usize;
            if let Some(s) = p.blur_sigma {
                assert!((0.1..2.0).contains(&s), "sigma {s}");
            }
            if p.grayscale && !p.solarized {
                assert!(out.pixels().all(|q| q[0] == q[1] && q[1] == q[2]));
            }
        }
        let rate = |k: usize| k as f64 / n as f64;
        assert!(
            (rate(flips) - 0.5).abs() < 0.05,
            "flip rate {}",
            rate(flips)
        );
        assert!((rate(jit) - 0.8).abs() < 0.05, "jitter rate {}", rate(jit));
        assert!((rate(gray) - 0.2).abs() < 0.05, "gray rate {}", rate(gray));
        assert!(
            (rate(sol) - 0.2).abs() < 0.05,
            "solarize rate {}",
            rate(sol)
        );
        assert!((rate(blur) - 0.1).abs() < 0.05, "blur rate {}", rate(blur));
        let (_, p) = augment_image(&img, &cfg.globals[0], &mut rng);
        assert!(
            p.blur_sigma.is_some() && !p.solarized,
            "global 1 always blurs, never solarizes"
        );
    }

    #[test]
    fn make_views_gives_view_major_shapes_and_is_deterministic() {
        let img = RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 33])
        });
        let cfg = MultiCropConfig::for_image_size(32, 16, 10);
        cfg.validate(4).unwrap();
        let (views, params) = make_views(&img, &cfg, &mut Rng::keyed(&[1, 2, 3]));
        assert_eq!((views.len(), params.len()), (12, 12));
        assert!(views[..2].iter().all(|v| v.len() == 3 * 32 * 32));
        assert!(views[2..].iter().all(|v| v.len() == 3 * 16 * 16));
        assert!(
            views
                .iter()
                .flatten()
                .all(|v| v.is_finite() && v.abs() < 3.0)
        );
        let (again, _) = make_views(&img, &cfg, &mut Rng::keyed(&[1, 2, 3]));
        assert_eq!(views, again);
        let (other, _) = make_views(&img, &cfg, &mut Rng::keyed(&[1, 2, 4]));
        assert_ne!(views, other);
        let ev = eval_view(&img, 36, 32);
        assert_eq!(ev.len(), 3 * 32 * 32);
    }
}
