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
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.picks.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let mut s = self.parent.get(self.picks[index])?;
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
        self.parent.label(self.picks[index])
    }
}
