//! `open`: recognises the dataset format at a path (an IDX folder for MNIST / Fashion-MNIST,
//! CIFAR-10/100 binary batches, or an image folder) and opens it as a `Dataset`.

use anyhow::{Result, bail};
use std::path::Path;

use super::dataset::{Dataset, Split};
use super::{cifar, folder, idx};

const EXPECTED: &str = "expected a folder with IDX files (train-images-idx3-ubyte[.gz], t10k-...), \
CIFAR binary batches (data_batch_1.bin.. / test_batch.bin, or train.bin / test.bin), \
or images (class subfolders, or a flat folder of images)";

/// Opens the dataset at `path`, recognising its format (IDX, CIFAR binary, image folder).
pub fn open(path: &Path, split: Split) -> Result<Box<dyn Dataset>> {
    if !path.exists() {
        bail!(
            "no dataset at {}: the path does not exist ({EXPECTED})",
            path.display()
        );
    }
    if !path.is_dir() {
        bail!(
            "dataset path {} is a file, not a folder: extract archives first ({EXPECTED})",
            path.display()
        );
    }
    let ds: Box<dyn Dataset> = if idx::detect(path) {
        Box::new(idx::IdxDataset::open(path, split)?)
    } else if let Some(found) = cifar::detect(path) {
        Box::new(cifar::CifarDataset::open(&found, split)?)
    } else {
        Box::new(folder::FolderDataset::open(path, split)?)
    };
    if ds.is_empty() {
        bail!(
            "dataset {} ({split} split) is empty ({EXPECTED})",
            path.display()
        );
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_and_file_paths_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = open(&missing, Split::Train).err().unwrap().to_string();
        assert!(
            err.contains("does not exist") && err.contains("nope"),
            "{err}"
        );
        let file = dir.path().join("x.tar.gz");
        std::fs::write(&file, b"abc").unwrap();
        let err = open(&file, Split::Train).err().unwrap().to_string();
        assert!(
            err.contains("is a file") && err.contains("x.tar.gz"),
            "{err}"
        );
    }

    #[test]
    fn empty_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", open(dir.path(), Split::Train).err().unwrap());
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("no images") || err.contains("empty"), "{err}");
    }
}
