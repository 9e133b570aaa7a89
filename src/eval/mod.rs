//! Evaluation of frozen features (method.md §5): kNN, linear probe, low-shot logistic regression
//! and k-means clustering metrics, on plain row-major `f32` feature matrices with `u32` labels.

pub mod cluster;
pub mod knn;
pub mod logreg;
pub mod probe;
pub mod protocols;

use anyhow::{Result, ensure};
use rayon::prelude::*;
use std::ops::Range;

/// Number of rows of a row-major matrix of width `dim`, checking that the length fits.
pub(crate) fn rows(x: &[f32], dim: usize, what: &str) -> Result<usize> {
    ensure!(
        dim > 0,
        "{what}: the feature dimension is 0: pass the width of one feature row"
    );
    ensure!(
        x.len().is_multiple_of(dim),
        "{what}: {} values are not a whole number of rows of width {dim}: check the dim passed",
        x.len()
    );
    Ok(x.len() / dim)
}

/// Checks that there is one label per row and that every label is below `n_classes`.
pub(crate) fn check_labels(labels: &[u32], n: usize, n_classes: usize, what: &str) -> Result<()> {
    ensure!(
        labels.len() == n,
        "{what}: {} labels for {n} feature rows: pass one label per row",
        labels.len()
    );
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= n_classes) {
        anyhow::bail!("{what}: label {bad} is not below n_classes = {n_classes}: raise n_classes");
    }
    Ok(())
}

/// Index of the largest value; ties go to the lowest index (empty input gives 0).
pub(crate) fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Splits `0..n` into one contiguous range per rayon thread and maps them in parallel, returning
/// the results in range order: for reductions whose partial results are combined in a fixed order.
pub(crate) fn par_ranges<T: Send>(n: usize, f: impl Fn(Range<usize>) -> T + Sync) -> Vec<T> {
    let parts = rayon::current_num_threads().min(n).max(1);
    let per = n.div_ceil(parts).max(1);
    (0..parts)
        .into_par_iter()
        .map(|t| f((t * per).min(n)..((t + 1) * per).min(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_ranges_cover_every_index_once_in_order() {
        for n in [0usize, 1, 5, 17, 1000] {
            let parts = par_ranges(n, |r| r.collect::<Vec<_>>());
            let all: Vec<usize> = parts.into_iter().flatten().collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn argmax_prefers_the_lowest_index_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax::<f64>(&[]), 0);
    }

    #[test]
    fn shape_errors_name_the_value() {
        let e = rows(&[1.0; 7], 3, "train features")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train features") && e.contains("width 3"), "{e}");
        let e = check_labels(&[0, 5], 2, 3, "labels")
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 5") && e.contains("n_classes = 3"), "{e}");
    }
}
