//! Training data: datasets (image folders, CIFAR binaries, IDX), the §4.1 multi-crop and §5.1 eval
//! views on one Pillow-exact resizer, a deterministic multi-threaded loader, manifests, previews.

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod eval_split;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod manifest;
#[cfg(test)]
pub(crate) mod mutate;
pub mod open;
pub mod preview;
pub mod resize;
pub mod subset;
pub mod tensors;
pub mod views;

pub use augment::{JitterParams, ViewParams};
pub use dataset::{Dataset, Sample, Split, get_or_skip};
pub use eval_split::{EvalSplit, SplitSource};
pub use loader::{Batch, EpochIter, EpochPosition, Loader};
pub use manifest::Manifest;
pub use open::open;
pub use preview::preview_grid;
pub use resize::CropBox;
pub use tensors::DeviceBatch;
pub use views::{IMAGENET_MEAN, IMAGENET_STD, MultiCropConfig, ViewConfig, eval_view, make_views};
