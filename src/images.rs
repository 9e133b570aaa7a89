//! Images from a folder for feature extraction: the evaluation transform of method.md §5.1
//! (resize the shorter side, centre crop, ImageNet mean/std) with unreadable files skipped.

use anyhow::{Context, Result};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// ImageNet channel means and standard deviations (method.md §4.1).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "webp", "gif"];

/// Image files below `dir` (recursively), sorted by path.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("cannot read folder {}", d.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    anyhow::ensure!(
        !out.is_empty(),
        "no images ({}) found in {}",
        EXTENSIONS.join(", "),
        dir.display()
    );
    Ok(out)
}

/// Eval transform: shorter side → `resize` (bicubic), centre crop `crop × crop`, normalised
/// CHW floats.
pub fn eval_transform(img: &image::DynamicImage, resize: u32, crop: u32) -> Vec<f32> {
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let s = resize as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * s).round() as u32).max(crop),
        ((h as f64 * s).round() as u32).max(crop),
    );
    let resized = image::imageops::resize(&rgb, nw, nh, FilterType::CatmullRom);
    let (x0, y0) = ((nw - crop) / 2, (nh - crop) / 2);
    let plane = (crop * crop) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for y in 0..crop {
        for x in 0..crop {
            let p = resized.get_pixel(x0 + x, y0 + y);
            for c in 0..3 {
                let v = p[c] as f32 / 255.0;
                out[c * plane + (y * crop + x) as usize] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    out
}

/// Loads and transforms every readable image; returns the data, the files used and the
/// files skipped with the reason.
pub fn load_folder(
    paths: &[PathBuf],
    resize: u32,
    crop: u32,
) -> (Vec<f32>, Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut data = Vec::new();
    let (mut used, mut skipped) = (Vec::new(), Vec::new());
    for p in paths {
        match image::open(p) {
            Ok(img) => {
                data.extend(eval_transform(&img, resize, crop));
                used.push(p.clone());
            }
            Err(e) => skipped.push((p.clone(), e.to_string())),
        }
    }
    (data, used, skipped)
}
