//! k-nearest-neighbour classification of frozen features (method.md §5.1): train-set
//! standardisation, L2 rows, cosine top-k on the device in chunks, exp(sim/τ) class votes.

use super::{argmax, check_labels, rows};
use crate::select;
use anyhow::{Context, Result, anyhow, ensure};
use burn::tensor::{Device, Tensor, TensorData};

/// Default neighbour count of the paper's tables (§5.1).
pub const DEFAULT_K: usize = 10;
/// Default vote temperature (§5.1, as DINO and solo-learn).
pub const DEFAULT_TAU: f32 = 0.07;
/// The k grid of the paper's kNN eval configs (§5.1).
pub const K_GRID: [usize; 10] = [1, 2, 3, 5, 10, 20, 30, 50, 100, 200];
/// `std + STD_EPS` divides in the standardisation (§5.1).
pub const STD_EPS: f64 = 1e-6;

/// Standardises every column of `train` and `test` with the *train* mean and standard deviation
/// (`std + 1e-6`; unbiased std as `torch.std` in the reference `knn.py`), then L2-normalises every
/// row of both (§5.1). Rows of zeros stay zero.
pub fn standardize(train: &mut [f32], test: &mut [f32], dim: usize) -> Result<()> {
    let n = rows(train, dim, "kNN train features")?;
    rows(test, dim, "kNN test features")?;
    ensure!(
        n >= 2,
        "kNN train features: {n} row(s) cannot be standardised: pass at least 2 train rows"
    );
    let (mean, std) = column_mean_std(train, dim);
    for x in [&mut *train, &mut *test] {
        for row in x.chunks_exact_mut(dim) {
            for ((v, m), s) in row.iter_mut().zip(&mean).zip(&std) {
                *v = ((*v as f64 - m) / s) as f32;
            }
        }
        l2_normalize_rows(x, dim);
    }
    Ok(())
}

/// Column means and unbiased standard deviations plus [`STD_EPS`] (needs ≥ 2 rows).
fn column_mean_std(x: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / dim) as f64;
    let mut mean = vec![0.0f64; dim];
    for row in x.chunks_exact(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; dim];
    for row in x.chunks_exact(dim) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|s| (s / (n - 1.0)).sqrt() + STD_EPS)
        .collect();
    (mean, std)
}

/// Divides every row by its L2 norm (clamped below at 1e-12, as `F.normalize`).
pub fn l2_normalize_rows(x: &mut [f32], dim: usize) {
    for row in x.chunks_exact_mut(dim) {
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let inv = 1.0 / norm.max(1e-12);
        row.iter_mut().for_each(|v| *v = (*v as f64 * inv) as f32);
    }
}

/// Fraction of predictions equal to the labels (0 for empty input).
pub fn accuracy(pred: &[u32], labels: &[u32]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    let hits = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    hits as f64 / pred.len() as f64
}

/// Classifies every test row by its k nearest train rows under cosine similarity, for every k of
/// `ks` from one neighbour search (§5.1). Rows must already be standardised and L2-normalised
/// ([`standardize`]). Each neighbour votes `exp(sim/τ)` for its class; the class with the largest
/// summed vote wins (ties → lowest class id).
///
/// The similarities are computed on `device`, `chunk` test rows at a time, so at most
/// `chunk × n_train` similarities exist at once (plus the train matrix itself); on GPUs the
/// train rows are split into blocks of at most 64 MiB whose top-k lists are merged. Values of `ks`
/// above `n_train` are dropped, as the reference implementation does; the result holds the
/// remaining k in increasing order, each with one prediction per test row.
#[allow(clippy::too_many_arguments)]
pub fn knn_classify(
    train_feats: &[f32],
    train_labels: &[u32],
    test_feats: &[f32],
    dim: usize,
    n_classes: usize,
    ks: &[usize],
    tau: f32,
    device: &Device,
    chunk: usize,
) -> Result<Vec<(usize, Vec<u32>)>> {
    let search = Search {
        n_classes,
        ks,
        tau,
        chunk,
        budget: (!select::host_device(device)).then_some(GPU_BLOCK_BYTES),
    };
    knn_search(train_feats, train_labels, test_feats, dim, &search, device)
}

/// The settings of one kNN search: classes, k grid, vote temperature, test rows per chunk and
/// the byte budget per train block and similarity chunk (`None`: the whole train set at once).
struct Search<'a> {
    n_classes: usize,
    ks: &'a [usize],
    tau: f32,
    chunk: usize,
    budget: Option<usize>,
}

/// [`knn_classify`] with explicit [`Search`] settings.
fn knn_search(
    train_feats: &[f32],
    train_labels: &[u32],
    test_feats: &[f32],
    dim: usize,
    search: &Search,
    device: &Device,
) -> Result<Vec<(usize, Vec<u32>)>> {
    let Search {
        n_classes,
        ks,
        tau,
        chunk,
        budget,
    } = *search;
    let n_train = rows(train_feats, dim, "kNN train features")?;
    let n_test = rows(test_feats, dim, "kNN test features")?;
    check_labels(train_labels, n_train, n_classes, "kNN train labels")?;
    ensure!(
        tau > 0.0 && tau.is_finite(),
        "kNN temperature tau = {tau}: pass a positive value (the paper uses 0.07)"
    );
    let ks = usable_ks(ks, n_train)?;
    let kmax = ks[ks.len() - 1];
    let (block_rows, chunk) = chunk_sizes(budget, n_train, dim, chunk);
    let blocks: Vec<(usize, Tensor<2>)> = (0..n_train)
        .step_by(block_rows)
        .map(|start| {
            let len = block_rows.min(n_train - start);
            let part = train_feats[start * dim..(start + len) * dim].to_vec();
            let t = Tensor::<2>::from_data(TensorData::new(part, [len, dim]), device);
            (start, t.transpose())
        })
        .collect();
    let mut preds = vec![Vec::with_capacity(n_test); ks.len()];
    for start in (0..n_test).step_by(chunk) {
        let len = chunk.min(n_test - start);
        let part = test_feats[start * dim..(start + len) * dim].to_vec();
        let query = Tensor::<2>::from_data(TensorData::new(part, [len, dim]), device);
        let mut top: Option<select::TopK> = None;
        for (offset, block) in &blocks {
            let t = select::top_k(query.clone().matmul(block.clone()), kmax, None)?;
            top = Some(match top {
                None => t.shifted(*offset),
                Some(best) => best.merge(&t.shifted(*offset), kmax),
            });
        }
        let top = top.context("kNN: no train rows")?;
        for r in 0..len {
            let votes = vote_row(
                top.row_scores(r),
                top.row_cols(r),
                train_labels,
                n_classes,
                &ks,
                tau,
            )?;
            for (p, v) in preds.iter_mut().zip(votes) {
                p.push(v);
            }
        }
    }
    Ok(ks.into_iter().zip(preds).collect())
}

/// The k values of `ks` that are ≥ 1 and ≤ `n_train`, sorted and unique; an error if none is.
fn usable_ks(ks: &[usize], n_train: usize) -> Result<Vec<usize>> {
    let mut v: Vec<usize> = ks
        .iter()
        .copied()
        .filter(|&k| k >= 1 && k <= n_train)
        .collect();
    v.sort_unstable();
    v.dedup();
    ensure!(
        !v.is_empty(),
        "kNN: no k in {ks:?} is between 1 and the {n_train} train rows: pass e.g. k = {}",
        DEFAULT_K.min(n_train.max(1))
    );
    Ok(v)
}

/// Bytes one similarity or train block may take on a GPU: below wgpu's default 128 MiB storage
/// binding limit, which software and mobile adapters keep.
const GPU_BLOCK_BYTES: usize = 64 << 20;

/// (train rows per block, test rows per chunk). Without a budget the whole train set is one
/// block; with one, neither a train block nor a similarity chunk exceeds `budget` bytes.
fn chunk_sizes(budget: Option<usize>, n_train: usize, dim: usize, chunk: usize) -> (usize, usize) {
    let chunk = chunk.max(1);
    let Some(bytes) = budget else {
        return (n_train.max(1), chunk);
    };
    let block = (bytes / (4 * dim.max(1))).clamp(1, n_train.max(1));
    (block, chunk.min(bytes / (4 * block)).max(1))
}

/// Predictions of one test row for every k of `ks` (sorted), from its top-`kmax` neighbours
/// ordered best first ([`select::top_k`] order).
fn vote_row(
    sims: &[f32],
    idx: &[usize],
    train_labels: &[u32],
    n_classes: usize,
    ks: &[usize],
    tau: f32,
) -> Result<Vec<u32>> {
    let mut weights = vec![0.0f64; n_classes];
    let mut out = Vec::with_capacity(ks.len());
    let mut next = 0;
    for (j, (&sim, &i)) in sims.iter().zip(idx).enumerate() {
        let label = train_labels
            .get(i)
            .ok_or_else(|| anyhow!("kNN: the device returned neighbour index {i} out of range"))?;
        weights[*label as usize] += (sim as f64 / tau as f64).exp();
        while next < ks.len() && ks[next] == j + 1 {
            out.push(argmax(&weights) as u32);
            next += 1;
        }
    }
    Ok(out)
}

/// Standardises copies of the features, classifies the test rows for every k of `ks` and returns
/// `(k, accuracy)` pairs: the whole §5.1 protocol in one call.
#[allow(clippy::too_many_arguments)]
pub fn knn_accuracy(
    train_feats: &[f32],
    train_labels: &[u32],
    test_feats: &[f32],
    test_labels: &[u32],
    dim: usize,
    n_classes: usize,
    ks: &[usize],
    tau: f32,
    device: &Device,
    chunk: usize,
) -> Result<Vec<(usize, f64)>> {
    let n_test = rows(test_feats, dim, "kNN test features")?;
    check_labels(test_labels, n_test, usize::MAX, "kNN test labels")?;
    let (mut train, mut test) = (train_feats.to_vec(), test_feats.to_vec());
    standardize(&mut train, &mut test, dim)?;
    let preds = knn_classify(
        &train,
        train_labels,
        &test,
        dim,
        n_classes,
        ks,
        tau,
        device,
        chunk,
    )?;
    Ok(preds
        .into_iter()
        .map(|(k, p)| (k, accuracy(&p, test_labels)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardize_uses_train_statistics_and_unit_rows() {
        let mut train = vec![1.0, 10.0, 3.0, 30.0, 5.0, 20.0];
        let mut test = vec![3.0, 20.0, 0.0, 0.0];
        standardize(&mut train, &mut test, 2).unwrap();
        // train col 0: mean 3, std 2; col 1: mean 20, std 10 → test row 0 is (0, 0).
        assert_eq!(&test[..2], &[0.0, 0.0]);
        let r = (1.5f32.powi(2) + 2.0f32.powi(2)).sqrt();
        assert!((test[2] + 1.5 / r).abs() < 1e-5 && (test[3] + 2.0 / r).abs() < 1e-5);
        for row in train.chunks(2) {
            let n: f32 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-5, "{row:?}");
        }
    }

    #[test]
    fn votes_cover_a_k_grid_and_break_ties_low() {
        let labels = [2, 1, 1, 0];
        let sims = [0.9, 0.5, 0.5, 0.1];
        let idx = [0, 1, 2, 3];
        let out = vote_row(&sims, &idx, &labels, 3, &[1, 3, 4], 1.0).unwrap();
        // k=1: class 2; k=3: class 1 (2·e^0.5 > e^0.9); k=4 adds class 0 (still class 1)
        assert_eq!(out, vec![2, 1, 1]);
        let tie = vote_row(&[0.3, 0.3], &[0, 1], &[1, 0], 2, &[2], 0.07).unwrap();
        assert_eq!(tie, vec![0]);
    }

    #[test]
    fn gpu_chunks_stay_below_the_binding_limit() {
        assert_eq!(chunk_sizes(None, 50_000, 256, 1024), (50_000, 1024));
        let gpu = Some(GPU_BLOCK_BYTES);
        let (block, chunk) = chunk_sizes(gpu, 50_000, 256, 1024);
        assert!(block * 256 * 4 <= GPU_BLOCK_BYTES && chunk * block * 4 <= GPU_BLOCK_BYTES);
        assert_eq!((block, chunk), (50_000, 335));
        assert_eq!(chunk_sizes(gpu, 1_281_167, 1024, 1024), (16_384, 1024));
    }

    #[test]
    fn blocked_search_equals_one_search() {
        let mut rng = crate::rng::Rng::new(1);
        let (n, m, d) = (300, 40, 8);
        let mut tr: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let mut te: Vec<f32> = (0..m * d).map(|_| rng.normal() as f32).collect();
        standardize(&mut tr, &mut te, d).unwrap();
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let dev = Device::flex();
        let one = knn_classify(&tr, &labels, &te, d, 3, &[1, 5, 20], 0.07, &dev, 7).unwrap();
        // a budget of 37 train rows: 9 blocks whose top-20 lists are merged, chunks of 7 rows
        let budget = Some(37 * d * 4);
        assert_eq!(chunk_sizes(budget, n, d, 7), (37, 7));
        let search = Search {
            n_classes: 3,
            ks: &[1, 5, 20],
            tau: 0.07,
            chunk: 7,
            budget,
        };
        let blocked = knn_search(&tr, &labels, &te, d, &search, &dev).unwrap();
        assert_eq!(blocked, one);
        assert_eq!(one.len(), 3);
    }

    #[test]
    fn ks_above_the_train_size_are_dropped() {
        assert_eq!(usable_ks(&[20, 1, 5, 5, 0], 10).unwrap(), vec![1, 5]);
        let e = usable_ks(&[20], 10).unwrap_err().to_string();
        assert!(e.contains("10 train rows"), "{e}");
    }
}
