//! Images from a folder for `mimr embed --images`: every readable file under the evaluation
//! transform of method.md §5.1 (`data::eval_view`), unreadable files skipped with the reason.

use std::path::PathBuf;

pub use crate::data::folder::list_images;

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
                data.extend(crate::data::eval_view(&img.to_rgb8(), resize, crop));
                used.push(p.clone());
            }
            Err(e) => skipped.push((p.clone(), e.to_string())),
        }
    }
    (data, used, skipped)
}
