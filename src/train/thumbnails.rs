//! The probe subset's images as one PNG atlas plus a JSON index (tile, label, class names), written
//! into the run directory at run start so a viewer never needs the training data to show an image.

use crate::data::Dataset;
use crate::data::augment::{CropBox, resize_bicubic};
use crate::runlog::Thumbnails;
use anyhow::{Context, Result};
use image::{ImageEncoder, Rgb, RgbImage};
use rayon::prelude::*;
use std::path::Path;

pub const IMAGE_FILE: &str = "thumbnails.png";
pub const INDEX_FILE: &str = "thumbnails.json";
/// Largest tile side; smaller images keep their own size (at least 8 px).
pub const MAX_TILE: u32 = 64;

pub use crate::runlog::{ThumbnailEntry as Entry, ThumbnailIndex as Index};

/// Writes the atlas of samples `0..n` of `ds` into `dir`; returns the run-log event.
pub fn write(dir: &Path, ds: &dyn Dataset, n: usize) -> Result<Thumbnails> {
    let n = n.min(ds.len());
    let samples: Vec<usize> = (0..n).collect();
    let (atlas, index) = atlas(ds, &samples);
    let tile = index.tile;
    write_files(dir, IMAGE_FILE, INDEX_FILE, &atlas, &index)?;
    Ok(Thumbnails {
        image: IMAGE_FILE.into(),
        index: INDEX_FILE.into(),
        samples: n,
        tile,
    })
}

/// The atlas of dataset samples `samples` (tile i = `samples[i]`, row-major, grey where a sample
/// is unreadable) and its index. The tile side is the first readable image's shorter side,
/// clamped to 8..=[`MAX_TILE`].
pub fn atlas(ds: &dyn Dataset, samples: &[usize]) -> (RgbImage, Index) {
    let native = (samples.iter())
        .find_map(|&i| ds.get(i).ok())
        .map_or(MAX_TILE, |s| s.image.width().min(s.image.height()));
    let tile = native.clamp(8, MAX_TILE);
    // each image is shrunk to its tile as soon as it is decoded (bounded memory)
    let tiles: Vec<Option<(RgbImage, Option<u32>)>> = samples
        .par_iter()
        .map(|&i| ds.get(i).ok().map(|s| (square(&s.image, tile), s.label)))
        .collect();
    let n = samples.len();
    let columns = (n as f64).sqrt().ceil().max(1.0) as u32;
    let rows = (n as u32).div_ceil(columns).max(1);
    let mut atlas = RgbImage::from_pixel(columns * tile, rows * tile, Rgb([128, 128, 128]));
    let mut entries = Vec::with_capacity(n);
    for (i, (s, &sample)) in tiles.iter().zip(samples).enumerate() {
        let (x, y) = ((i as u32 % columns) * tile, (i as u32 / columns) * tile);
        if let Some((img, _)) = s {
            image::imageops::replace(&mut atlas, img, x.into(), y.into());
        }
        entries.push(Entry {
            sample,
            label: s.as_ref().and_then(|(_, l)| *l),
            readable: s.is_some(),
        });
    }
    let index = Index {
        tile,
        columns,
        samples: entries,
        classes: ds.classes().to_vec(),
    };
    (atlas, index)
}

/// Writes `atlas` as the PNG `image` and `index` as the JSON `index_file` (both relative to
/// `dir`), each atomically.
pub fn write_files(
    dir: &Path,
    image: &str,
    index_file: &str,
    atlas: &RgbImage,
    index: &Index,
) -> Result<()> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            atlas.as_raw(),
            atlas.width(),
            atlas.height(),
            image::ExtendedColorType::Rgb8,
        )
        .context("cannot encode the thumbnail atlas")?;
    crate::fsutil::write_atomic(&dir.join(image), &png)?;
    crate::fsutil::write_atomic(&dir.join(index_file), &serde_json::to_vec(index)?)
}

/// The centre square of `img` resized to `tile × tile` (PIL bicubic).
pub fn square(img: &RgbImage, tile: u32) -> RgbImage {
    let side = img.width().min(img.height());
    let crop = CropBox {
        top: (img.height() - side) / 2,
        left: (img.width() - side) / 2,
        height: side,
        width: side,
    };
    resize_bicubic(img, crop, tile, tile)
}
