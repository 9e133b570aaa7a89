//! `mimr data preview`: one PNG showing a sample (resized) above its global views and its local
//! views, de-normalised, exactly as the loader makes them in epoch 0 (method.md §4.1).

use anyhow::{Context, Result, ensure};
use image::RgbImage;
use std::path::Path;

use super::augment::{CropBox, denormalize_chw, resize_bicubic};
use super::dataset::{Dataset, get_or_skip};
use super::views::{MultiCropConfig, make_views};
use crate::rng::Rng;

const PAD: u32 = 4;
const BACKGROUND: image::Rgb<u8> = image::Rgb([40, 40, 40]);

/// Writes a PNG grid of sample `index`'s views (row 1: the original, row 2: global views, row 3:
/// local views), drawn with the loader's stream `Rng::keyed(&[seed, 0, index])`; written atomically.
/// An unreadable sample is skipped and counted as the loader does: the next readable one is shown.
/// Returns the sample shown and how many were skipped.
pub fn preview_grid(
    dataset: &dyn Dataset,
    index: usize,
    cfg: &MultiCropConfig,
    seed: u64,
    out: &Path,
) -> Result<(usize, usize)> {
    ensure!(
        index < dataset.len(),
        "sample index {index} is out of range: {} has {} samples",
        dataset.describe(),
        dataset.len()
    );
    let mut skipped = 0;
    let (shown, sample) = (index..dataset.len())
        .find_map(|i| get_or_skip(dataset, i, &mut skipped).map(|s| (i, s)))
        .with_context(|| {
            format!(
                "no readable sample from index {index} on in {}",
                dataset.describe()
            )
        })?;
    let grid = render_grid(
        &sample.image,
        cfg,
        &mut Rng::keyed(&[seed, 0, shown as u64]),
    )?;
    let mut png = Vec::new();
    grid.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .with_context(|| format!("cannot encode the preview PNG for {}", out.display()))?;
    crate::fsutil::write_atomic(out, &png)?;
    Ok((shown, skipped))
}

/// The grid image: the original scaled to the global view height, then one row per view group.
pub fn render_grid(img: &RgbImage, cfg: &MultiCropConfig, rng: &mut Rng) -> Result<RgbImage> {
    let (gs, ls) = (cfg.global_size() as u32, cfg.local_size() as u32);
    ensure!(
        gs > 0 && img.width() > 0 && img.height() > 0,
        "nothing to preview (empty image or no global views)"
    );
    let (views, _) = make_views(img, cfg, rng);
    let ow =
        ((img.width() as f64 * gs as f64 / img.height() as f64).round() as u32).clamp(1, 4 * gs);
    let full = CropBox {
        top: 0,
        left: 0,
        height: img.height(),
        width: img.width(),
    };
    let original = resize_bicubic(img, full, ow, gs);
    let ng = cfg.globals.len() as u32;
    let nl = cfg.n_local as u32;
    let row_width = |n: u32, side: u32| n * (side + PAD) + PAD;
    let width =
        (ow + 2 * PAD)
            .max(row_width(ng, gs))
            .max(if nl > 0 { row_width(nl, ls) } else { 0 });
    let height = 3 * PAD + 2 * gs + if nl > 0 { ls + PAD } else { 0 };
    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    image::imageops::replace(&mut canvas, &original, PAD as i64, PAD as i64);
    for (k, view) in views.iter().enumerate() {
        let k = k as u32;
        let (side, x, y) = if k < ng {
            (gs, PAD + k * (gs + PAD), 2 * PAD + gs)
        } else {
            (ls, PAD + (k - ng) * (ls + PAD), 3 * PAD + 2 * gs)
        };
        let tile = denormalize_chw(view, side, side, cfg.mean, cfg.std)?;
        image::imageops::replace(&mut canvas, &tile, x as i64, y as i64);
    }
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, open};

    #[test]
    fn preview_writes_a_png_grid_with_every_view() {
        let dir = tempfile::tempdir().unwrap();
        crate::data::folder::make_test_folder(dir.path(), false);
        let ds = open(dir.path(), Split::Train).unwrap();
        let cfg = MultiCropConfig::for_image_size(16, 8, 3);
        let out = dir.path().join("out").join("grid.png");
        assert_eq!(preview_grid(ds.as_ref(), 1, &cfg, 7, &out).unwrap(), (1, 0));
        let grid = image::open(&out).unwrap().to_rgb8();
        // original 21×16 → 21 wide; globals row 2·20+4 = 44 wide; locals row 3·12+4 = 40 wide
        assert_eq!(grid.dimensions(), (44, 3 * PAD + 32 + 8 + PAD));
        assert_eq!(*grid.get_pixel(0, 0), BACKGROUND);
        let (views, _) = make_views(&ds.get(1).unwrap().image, &cfg, &mut Rng::keyed(&[7, 0, 1]));
        let tile = denormalize_chw(&views[3], 8, 8, cfg.mean, cfg.std).unwrap();
        assert_eq!(
            grid.get_pixel(PAD + 12 + 3, 3 * PAD + 32 + 5),
            tile.get_pixel(3, 5)
        );
        let err = preview_grid(ds.as_ref(), 99, &cfg, 7, &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn an_unreadable_sample_is_skipped_for_the_next_readable_one() {
        let dir = tempfile::tempdir().unwrap();
        crate::data::folder::make_test_folder(dir.path(), true);
        let ds = open(dir.path(), Split::Train).unwrap();
        assert!(ds.get(3).is_err(), "dog/bad.jpg is sample 3");
        let cfg = MultiCropConfig::for_image_size(16, 8, 3);
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        assert_eq!(preview_grid(ds.as_ref(), 3, &cfg, 7, &a).unwrap(), (4, 1));
        preview_grid(ds.as_ref(), 4, &cfg, 7, &b).unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
}
