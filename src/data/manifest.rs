//! A dataset manifest: samples per class, unlabelled count and (optionally verified) corrupt files,
//! printed as a table by `mimr data stats`.

use anyhow::{Result, anyhow};
use rayon::prelude::*;
use std::fmt;

use super::dataset::Dataset;

/// Counts describing a dataset. `samples` counts every entry, corrupt ones included; `per_class`
/// and `unlabelled` partition `samples`; `corrupt` lists the entries that failed to decode.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub dataset: String,
    pub samples: usize,
    pub per_class: Vec<(String, usize)>,
    pub unlabelled: usize,
    pub corrupt: Vec<String>,
    /// Whether every sample was decoded to find `corrupt` (otherwise `corrupt` is empty).
    pub checked: bool,
}

impl Manifest {
    /// Counts labels (cheap for every format) and, when `check` is true, decodes every sample on
    /// the rayon threads to list the corrupt ones (each logged as a warning with its reason).
    pub fn compute(ds: &dyn Dataset, check: bool) -> Result<Self> {
        let mut per_class: Vec<(String, usize)> =
            ds.classes().iter().map(|c| (c.clone(), 0)).collect();
        let mut unlabelled = 0;
        for i in 0..ds.len() {
            match ds.label(i)? {
                None => unlabelled += 1,
                Some(l) => {
                    let l = l as usize;
                    while per_class.len() <= l {
                        per_class.push((per_class.len().to_string(), 0));
                    }
                    per_class[l].1 += 1;
                }
            }
        }
        let corrupt = if check { find_corrupt(ds)? } else { Vec::new() };
        Ok(Self {
            dataset: ds.describe(),
            samples: ds.len(),
            per_class,
            unlabelled,
            corrupt,
            checked: check,
        })
    }

    /// Samples that decode (all of them when not checked).
    pub fn usable(&self) -> usize {
        self.samples - self.corrupt.len()
    }
}

/// Decodes every sample in parallel; returns the names of those that fail, in index order.
fn find_corrupt(ds: &dyn Dataset) -> Result<Vec<String>> {
    let bar = std::sync::Mutex::new(crate::progress::Progress::new(
        "check",
        "samples",
        ds.len() as u64,
        0,
    ));
    let check = || {
        (0..ds.len())
            .into_par_iter()
            .filter_map(|i| {
                let result = ds.verify(i);
                if let Ok(mut b) = bar.lock() {
                    b.inc(1);
                }
                let e = result.err()?;
                tracing::warn!("corrupt sample {i} ({}): {e:#}", ds.item_name(i));
                Some(ds.item_name(i))
            })
            .collect()
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
        .map_err(|_| anyhow!("checking the samples panicked (see the panic message above)"))
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.dataset)?;
        let w = self
            .per_class
            .iter()
            .map(|(c, _)| c.chars().count())
            .max()
            .unwrap_or(0)
            .max(12);
        writeln!(f, "{:<w$}  {:>9}", "class", "samples")?;
        for (name, count) in &self.per_class {
            writeln!(f, "{name:<w$}  {count:>9}")?;
        }
        if self.unlabelled > 0 {
            writeln!(f, "{:<w$}  {:>9}", "(unlabelled)", self.unlabelled)?;
        }
        writeln!(f, "{:<w$}  {:>9}", "total", self.samples)?;
        if !self.checked {
            return writeln!(f, "corrupt: not checked (decode every file to find them)");
        }
        writeln!(
            f,
            "corrupt: {} (skipped by the loader; usable {})",
            self.corrupt.len(),
            self.usable()
        )?;
        for name in self.corrupt.iter().take(20) {
            writeln!(f, "  {name}")?;
        }
        if self.corrupt.len() > 20 {
            writeln!(f, "  … and {} more", self.corrupt.len() - 20)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, open};

    #[test]
    fn folder_manifest_counts_classes_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        crate::data::folder::make_test_folder(dir.path(), true);
        let ds = open(dir.path(), Split::Train).unwrap();
        let m = Manifest::compute(ds.as_ref(), true).unwrap();
        assert_eq!(m.samples, 6);
        assert_eq!(
            m.per_class,
            [("cat".to_string(), 3), ("dog".to_string(), 3)]
        );
        assert_eq!(m.unlabelled, 0);
        assert_eq!(m.corrupt.len(), 1);
        assert!(m.corrupt[0].ends_with("bad.jpg"), "{:?}", m.corrupt);
        assert_eq!(m.usable(), 5);
        let table = m.to_string();
        assert!(
            table.contains("corrupt: 1") && table.contains("bad.jpg") && table.contains("dog"),
            "{table}"
        );
        let unchecked = Manifest::compute(ds.as_ref(), false).unwrap();
        assert!(!unchecked.checked && unchecked.corrupt.is_empty());
        assert!(unchecked.to_string().contains("not checked"));
    }

    #[test]
    fn flat_folder_manifest_is_unlabelled() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            image::RgbImage::new(3, 3)
                .save(dir.path().join(format!("{i}.png")))
                .unwrap();
        }
        let ds = open(dir.path(), Split::Train).unwrap();
        let m = Manifest::compute(ds.as_ref(), true).unwrap();
        assert_eq!(
            (m.samples, m.unlabelled, m.per_class.len(), m.corrupt.len()),
            (3, 3, 0, 0)
        );
        assert!(m.to_string().contains("(unlabelled)"));
    }
}
