//! The `Dataset` trait every data source implements, with its `Sample` and `Split` types; the
//! formats implement it and `data::open` picks one for a path.

use anyhow::{Result, bail};

/// One decoded sample: its dataset index (the NN queue of method.md §3 needs it), its label when the
/// dataset is labelled, and the image as 8-bit RGB (grey images are replicated to three channels).
#[derive(Clone, Debug)]
pub struct Sample {
    pub index: usize,
    pub label: Option<u32>,
    pub image: image::RgbImage,
}

/// A random-access source of samples, shared read-only between loader threads.
pub trait Dataset: Send + Sync {
    /// Number of samples (corrupt files included; they fail in `get`).
    fn len(&self) -> usize;
    /// Decodes sample `index`; an error means the sample is unreadable and should be skipped.
    fn get(&self, index: usize) -> Result<Sample>;
    /// Class names, indexed by label; empty for an unlabelled dataset.
    fn classes(&self) -> &[String];
    /// A one-line human description (format, path, split, size).
    fn describe(&self) -> String;

    /// True when the dataset has no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The label of `index` without decoding the image when the format allows it.
    fn label(&self, index: usize) -> Result<Option<u32>> {
        Ok(self.get(index)?.label)
    }
    /// Checks that `index` decodes; formats read fully into memory at open time have nothing to check.
    fn verify(&self, _index: usize) -> Result<()> {
        Ok(())
    }
    /// True when the format has separate train and test parts (IDX, CIFAR, an image folder with
    /// `train/` and `test/`); false when both splits open the same samples (a plain image folder).
    fn has_own_split(&self) -> bool {
        true
    }
    /// A name for sample `index` in reports (a file path for image folders).
    fn item_name(&self, index: usize) -> String {
        format!("#{index}")
    }
}

/// Which part of a dataset to read (`train` / `test` in configs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// "train" or "test".
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" | "val" | "eval" => Ok(Split::Test),
            other => bail!("unknown split {other:?}: use train or test"),
        }
    }
}

/// Sample `index`, or `None` after a warning naming it and one more count in `skipped` when it is
/// unreadable: how every reader outside the training loader skips corrupt files, as the loader does.
pub fn get_or_skip(ds: &dyn Dataset, index: usize, skipped: &mut usize) -> Option<Sample> {
    match ds.get(index) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "skipping unreadable sample {} ({}): {e:#}",
                index,
                ds.item_name(index)
            );
            *skipped += 1;
            None
        }
    }
}

/// The error for an index past the end, naming the dataset.
pub(crate) fn out_of_range(index: usize, len: usize, what: &str) -> anyhow::Error {
    anyhow::anyhow!("sample index {index} is out of range for {what} ({len} samples)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parses() {
        assert_eq!("Train".parse::<Split>().unwrap(), Split::Train);
        assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
        assert!("dev".parse::<Split>().is_err());
    }
}
