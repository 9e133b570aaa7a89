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
        // decoded under the dataset reader's limits: a file claiming a huge image is skipped
        match crate::data::folder::decode_file(p) {
            Ok(img) => {
                data.extend(crate::data::eval_view(&img, resize, crop));
                used.push(p.clone());
            }
            Err(e) => skipped.push((p.clone(), format!("{:#}", e.root_cause()))),
        }
    }
    (data, used, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_and_huge_images_are_skipped_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("a.png");
        image::RgbImage::new(8, 8).save(&ok).unwrap();
        let huge = dir.path().join("huge.png");
        std::fs::write(
            &huge,
            crate::data::folder::tests::png_claiming(100_000, 100_000),
        )
        .unwrap();
        let bad = dir.path().join("bad.jpg");
        std::fs::write(&bad, b"not an image").unwrap();
        let (data, used, skipped) = load_folder(&[ok.clone(), huge.clone(), bad.clone()], 8, 8);
        assert_eq!(used, [ok]);
        assert_eq!(data.len(), 3 * 8 * 8);
        let skipped_paths: Vec<&PathBuf> = skipped.iter().map(|(p, _)| p).collect();
        assert_eq!(skipped_paths, [&huge, &bad]);
        assert!(skipped[0].1.contains("limit"), "{}", skipped[0].1);
    }
}
