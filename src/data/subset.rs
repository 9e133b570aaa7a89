//! A strided subset of a dataset (`data.limit`): `limit` samples spread evenly over the whole
//! dataset so that every class is represented; samples are numbered by their position in the subset.

use super::dataset::{Dataset, Sample};
use anyhow::Result;
use std::sync::Arc;

/// `limit` samples of `parent` at indices `⌊i·len/limit⌋`; samples keep their position in the
/// subset as their index (the NN queue's identity).
pub struct Subset {
    parent: Arc<dyn Dataset>,
    picks: Vec<usize>,
}

impl Subset {
    pub fn new(parent: Arc<dyn Dataset>, limit: usize) -> Self {
        let n = parent.len();
        let k = limit.min(n);
        let picks = (0..k).map(|i| i * n / k.max(1)).collect();
        Self { parent, picks }
    }

    /// The samples of `parent` at `picks` (each `< parent.len()`), in that order.
    pub fn of(parent: Arc<dyn Dataset>, picks: Vec<usize>) -> Self {
        debug_assert!(picks.iter().all(|&i| i < parent.len()));
        Self { parent, picks }
    }

    /// The parent index of each sample of the subset.
    pub fn picks(&self) -> &[usize] {
        &self.picks
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.picks.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let &at = self
            .picks
            .get(index)
            .ok_or_else(|| super::dataset::out_of_range(index, self.picks.len(), "subset"))?;
        let mut s = self.parent.get(at)?;
        s.index = index;
        Ok(s)
    }
    fn classes(&self) -> &[String] {
        self.parent.classes()
    }
    fn describe(&self) -> String {
        format!(
            "{} (subset of {} samples)",
            self.parent.describe(),
            self.picks.len()
        )
    }
    fn label(&self, index: usize) -> Result<Option<u32>> {
        let &at = self
            .picks
            .get(index)
            .ok_or_else(|| super::dataset::out_of_range(index, self.picks.len(), "subset"))?;
        self.parent.label(at)
    }
    fn has_own_split(&self) -> bool {
        self.parent.has_own_split()
    }
    fn item_name(&self, index: usize) -> String {
        match self.picks.get(index) {
            Some(&at) => self.parent.item_name(at),
            None => format!("#{index} (out of range)"),
        }
    }
}
