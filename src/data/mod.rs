//! Training data: datasets (image folders, CIFAR binaries, IDX), the multi-crop augmentations of
//! method.md §4.1, a deterministic multi-threaded loader, manifests and view previews.

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod manifest;
pub mod preview;
pub mod subset;
pub mod tensors;
pub mod views;

pub use augment::{CropBox, JitterParams, ViewParams};
pub use dataset::{Dataset, Sample, Split, open};
pub use loader::{Batch, EpochIter, EpochPosition, Loader};
pub use manifest::Manifest;
pub use preview::preview_grid;
pub use tensors::DeviceBatch;
pub use views::{MultiCropConfig, ViewConfig, eval_view, make_views};
