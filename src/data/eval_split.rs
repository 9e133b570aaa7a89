//! Evaluation splits: the dataset's own train/test parts when it has them, otherwise a seeded,
//! stratified hold-out of its samples, so that no query is ever scored against a bank holding it.

use super::dataset::{Dataset, Split};
use super::subset::Subset;
use crate::rng::Rng;
use anyhow::{Context, Result, ensure};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Default share of a split-less dataset held out as test queries.
pub const DEFAULT_TEST_FRACTION: f64 = 0.2;

/// Where the bank (train) and query (test) samples come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitSource {
    /// The dataset's own train and test parts.
    Dataset,
    /// A seeded hold-out of `test_fraction` of every class of a dataset without a split.
    Stratified { test_fraction: f64, seed: u64 },
}

/// The two parts an evaluation reads, and how they were made.
pub struct EvalSplit {
    pub train: Arc<dyn Dataset>,
    pub test: Arc<dyn Dataset>,
    pub source: SplitSource,
}

impl EvalSplit {
    /// Opens `path`'s own split, or holds out `test_fraction` of each class (seeded) when the
    /// dataset has no split of its own.
    pub fn open(path: &Path, test_fraction: f64, seed: u64) -> Result<Self> {
        let train: Arc<dyn Dataset> = super::open(path, Split::Train)?.into();
        if train.has_own_split() {
            let test = super::open(path, Split::Test)?.into();
            return Ok(Self {
                train,
                test,
                source: SplitSource::Dataset,
            });
        }
        Self::hold_out(train, test_fraction, seed)
    }

    /// Splits `all` (a dataset without a split of its own) into train and test parts.
    pub fn hold_out(all: Arc<dyn Dataset>, test_fraction: f64, seed: u64) -> Result<Self> {
        ensure!(
            test_fraction > 0.0 && test_fraction < 1.0,
            "test fraction {test_fraction} is outside (0, 1): use e.g. --test-fraction 0.2"
        );
        let labels = (0..all.len())
            .map(|i| all.label(i))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("reading the labels of {}", all.describe()))?;
        let (train, test) = stratified(&labels, test_fraction, seed);
        ensure!(
            !train.is_empty() && !test.is_empty(),
            "{} has too few samples ({}) to hold out a test part: add images or give it train/ and test/ folders",
            all.describe(),
            all.len()
        );
        Ok(Self {
            train: Arc::new(Subset::of(all.clone(), train)),
            test: Arc::new(Subset::of(all, test)),
            source: SplitSource::Stratified {
                test_fraction,
                seed,
            },
        })
    }

    /// One line for the console: the source and the part sizes.
    pub fn describe(&self) -> String {
        let how = match &self.source {
            SplitSource::Dataset => "the dataset's own train/test split".to_string(),
            SplitSource::Stratified {
                test_fraction,
                seed,
            } => format!(
                "no train/test split in the dataset: held out {:.0} % of each class as test (seed {seed})",
                test_fraction * 100.0
            ),
        };
        format!(
            "{how}; {} train / {} test samples",
            self.train.len(),
            self.test.len()
        )
    }
}

/// Train and test indices of a stratified hold-out: within every label (unlabelled samples form
/// their own stratum) a seeded shuffle, then `round(fraction · n)` samples to test, at least one
/// when the stratum has two or more and never all of it. Both lists are sorted.
pub fn stratified(labels: &[Option<u32>], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut strata: BTreeMap<Option<u32>, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        strata.entry(*l).or_default().push(i);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (label, mut idx) in strata {
        let key = label.map_or(u64::MAX, u64::from);
        let mut rng = Rng::keyed(&[seed, 0x5_9117, key]);
        for i in (1..idx.len()).rev() {
            idx.swap(i, rng.below(i + 1));
        }
        let n = idx.len();
        let k = ((fraction * n as f64).round() as usize).clamp(n.min(2) / 2, n.saturating_sub(1));
        test.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(counts: &[usize]) -> Vec<Option<u32>> {
        let mut out = Vec::new();
        for (c, &n) in counts.iter().enumerate() {
            out.extend(std::iter::repeat_n(Some(c as u32), n));
        }
        out
    }

    #[test]
    fn hold_out_is_disjoint_complete_stratified_and_seeded() {
        let l = labels(&[50, 30, 7, 2, 1]);
        let (train, test) = stratified(&l, 0.2, 3);
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..l.len()).collect::<Vec<_>>(), "every sample once");
        let per_class = |set: &[usize], c: u32| set.iter().filter(|&&i| l[i] == Some(c)).count();
        assert_eq!(
            (0..5).map(|c| per_class(&test, c)).collect::<Vec<_>>(),
            vec![10, 6, 1, 1, 0],
            "round(0.2·n), at least one of two, never a whole class"
        );
        assert_eq!(stratified(&l, 0.2, 3), (train.clone(), test.clone()));
        let (_, other) = stratified(&l, 0.2, 4);
        assert_ne!(other, test, "another seed draws other samples");
        // not simply the first or last of each class
        let class0: Vec<usize> = test.iter().copied().filter(|&i| i < 50).collect();
        assert!(class0 != (0..10).collect::<Vec<_>>() && class0 != (40..50).collect::<Vec<_>>());
    }

    /// `n` samples of 1×1 images, labels alternating 0/1.
    struct Labelled(usize);
    impl Dataset for Labelled {
        fn len(&self) -> usize {
            self.0
        }
        fn get(&self, index: usize) -> Result<crate::data::Sample> {
            Ok(crate::data::Sample {
                index,
                label: Some(index as u32 % 2),
                image: image::RgbImage::new(1, 1),
            })
        }
        fn classes(&self) -> &[String] {
            &[]
        }
        fn describe(&self) -> String {
            "test data".into()
        }
        fn has_own_split(&self) -> bool {
            false
        }
    }

    #[test]
    fn hold_out_parts_read_the_held_out_samples() {
        let split = EvalSplit::hold_out(Arc::new(Labelled(20)), 0.2, 1).unwrap();
        assert_eq!((split.train.len(), split.test.len()), (16, 4));
        let ids = |d: &Arc<dyn Dataset>| (0..d.len()).map(|i| d.item_name(i)).collect::<Vec<_>>();
        let (tr, te) = (ids(&split.train), ids(&split.test));
        assert!(te.iter().all(|n| !tr.contains(n)), "{tr:?} {te:?}");
        let test_labels: Vec<_> = (0..4).map(|i| split.test.label(i).unwrap()).collect();
        assert_eq!(test_labels.iter().filter(|l| **l == Some(0)).count(), 2);
    }

    #[test]
    fn bad_fractions_are_refused() {
        let ds: Arc<dyn Dataset> = Arc::new(Labelled(10));
        for f in [0.0, 1.0, -0.5, f64::NAN] {
            let err = EvalSplit::hold_out(ds.clone(), f, 0)
                .err()
                .map(|e| e.to_string());
            assert!(err.is_some_and(|e| e.contains("--test-fraction")), "{f}");
        }
    }
}
