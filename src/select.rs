//! Row-wise top-k of a score matrix, as the queue lookup (method.md §3 item 2) and the kNN
//! search (§5.1) need it: a partial selection on the host for CPU devices, `topk` on GPUs.
//!
//! Both paths return every row's k best columns ordered by score (descending), ties broken by
//! the lower column; only a tie straddling the k-th place may keep a different column on a GPU.

use anyhow::{Result, anyhow};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

/// The k best `(score, column)` pairs of every row, row-major `[rows, k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub k: usize,
    pub scores: Vec<f32>,
    pub cols: Vec<usize>,
}

impl TopK {
    /// Columns of row `r`, best first.
    pub fn row_cols(&self, r: usize) -> &[usize] {
        &self.cols[r * self.k..(r + 1) * self.k]
    }

    /// Scores of row `r`, best first.
    pub fn row_scores(&self, r: usize) -> &[f32] {
        &self.scores[r * self.k..(r + 1) * self.k]
    }

    /// The same selection with every column moved by `offset` (a block of a larger matrix).
    pub fn shifted(mut self, offset: usize) -> Self {
        self.cols.iter_mut().for_each(|c| *c += offset);
        self
    }

    /// The best `k` of the union of two selections over the same rows (disjoint columns), in
    /// the same order: how blocks of columns searched separately combine.
    pub fn merge(&self, other: &TopK, k: usize) -> TopK {
        let rows = self.cols.len() / self.k.max(1);
        let k = k.min(self.k + other.k);
        let (mut scores, mut cols) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
        for r in 0..rows {
            let a = self.row_scores(r).iter().zip(self.row_cols(r));
            let b = other.row_scores(r).iter().zip(other.row_cols(r));
            let mut both: Vec<(f32, usize)> = a.chain(b).map(|(&s, &c)| (s, c)).collect();
            both.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            both.truncate(k);
            scores.extend(both.iter().map(|p| p.0));
            cols.extend(both.iter().map(|p| p.1));
        }
        TopK { k, scores, cols }
    }
}

/// Entries to demote: where `row_keys[r] == col_keys[c]` the score counts as `fill`.
#[derive(Clone, Copy)]
pub struct KeyMask<'a> {
    pub row_keys: &'a [i64],
    pub col_keys: &'a [i64],
    pub fill: f32,
}

/// True for devices whose tensors live in host memory (Flex, ndarray): reading scores back is
/// free there and a partial selection beats the backends' full-row sort.
pub fn host_device(device: &Device) -> bool {
    #[allow(deprecated)]
    let ndarray = Device::ndarray();
    *device == Device::flex() || *device == ndarray
}

/// Top-`k` of every row of `scores` (`k` clamped to the row length), entries under `mask`
/// demoted. On host devices the selection runs on the CPU threads; elsewhere the backend's
/// `topk` runs on the device (the mask is then applied there, uploading its keys).
pub fn top_k(scores: Tensor<2>, k: usize, mask: Option<KeyMask>) -> Result<TopK> {
    let [rows, cols] = scores.dims();
    let k = k.clamp(1, cols.max(1));
    let device = scores.device();
    if host_device(&device) {
        let data = read_data(scores)?;
        return Ok(top_k_host(as_f32(&data)?, cols, k, mask));
    }
    let scores = match mask {
        Some(m) => {
            let keys = |v: &[i64], shape: [usize; 2]| {
                Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), shape), &device)
                    .expand([rows, cols])
            };
            let equal = keys(m.row_keys, [rows, 1]).equal(keys(m.col_keys, [1, cols]));
            scores.mask_fill(equal, m.fill)
        }
        None => scores,
    };
    let (vals, idx) = scores.topk_with_indices(k, 1);
    let vals = read_f32(vals)?;
    let idx = read_i64(idx)?;
    Ok(sort_rows(vals, idx, k))
}

/// Partial selection of the top-`k` of each row of a row-major `[rows, cols]` matrix, rows in
/// parallel on the rayon threads; `mask` demotes (row, column) pairs with equal keys.
pub fn top_k_host(scores: &[f32], cols: usize, k: usize, mask: Option<KeyMask>) -> TopK {
    let rows = scores.len().checked_div(cols).unwrap_or(0);
    let k = k.clamp(1, cols.max(1));
    let (mut out_s, mut out_c) = (vec![0f32; rows * k], vec![0usize; rows * k]);
    out_s
        .par_chunks_mut(k)
        .zip(out_c.par_chunks_mut(k))
        .enumerate()
        .for_each(|(r, (rs, rc))| {
            let masked = mask.map(|m| (m, m.row_keys[r]));
            select_row(&scores[r * cols..(r + 1) * cols], masked, rs, rc);
        });
    TopK {
        k,
        scores: out_s,
        cols: out_c,
    }
}

/// Fills `out_s`/`out_c` (length k) with the best entries of `row`, best first. One comparison
/// per entry once the buffer is full; equal scores keep the earlier column.
fn select_row(row: &[f32], mask: Option<(KeyMask, i64)>, out_s: &mut [f32], out_c: &mut [usize]) {
    let k = out_s.len();
    let mut n = 0usize;
    for (c, &v) in row.iter().enumerate() {
        let v = match mask {
            Some((m, key)) if m.col_keys[c] == key => m.fill,
            // NaN ranks last (a diverged run is stopped by the trainer's NaN check anyway)
            _ if v.is_nan() => f32::NEG_INFINITY,
            _ => v,
        };
        if n == k && v.total_cmp(&out_s[k - 1]).is_le() {
            continue;
        }
        // first slot whose score is below v (stable for equal scores)
        let end = n.min(k - 1);
        let pos = out_s[..n.min(k)].partition_point(|s| s.total_cmp(&v).is_ge());
        out_s.copy_within(pos..end, pos + 1);
        out_c.copy_within(pos..end, pos + 1);
        out_s[pos] = v;
        out_c[pos] = c;
        n = (n + 1).min(k);
    }
}

/// Orders each row of a device `topk` result by (score desc, column asc).
fn sort_rows(vals: Vec<f32>, idx: Vec<i64>, k: usize) -> TopK {
    let mut scores = Vec::with_capacity(vals.len());
    let mut cols = Vec::with_capacity(vals.len());
    for (vs, is) in vals.chunks(k).zip(idx.chunks(k)) {
        let mut row: Vec<(f32, usize)> =
            vs.iter().zip(is).map(|(&v, &i)| (v, i as usize)).collect();
        row.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scores.extend(row.iter().map(|p| p.0));
        cols.extend(row.iter().map(|p| p.1));
    }
    TopK { k, scores, cols }
}

/// A float tensor's data on the host (no copy for a uniquely owned CPU tensor).
fn read_data<const D: usize>(t: Tensor<D>) -> Result<TensorData> {
    t.try_into_data()
        .map_err(|e| anyhow!("reading scores back from the device: {e:?}"))
}

/// The f32 values of `data` in place.
fn as_f32(data: &TensorData) -> Result<&[f32]> {
    data.as_slice::<f32>()
        .map_err(|e| anyhow!("scores are not f32 values: {e:?}"))
}

/// A float tensor's values on the host.
fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| anyhow!("reading scores back from the device: {e}"))
}

fn read_i64<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>> {
    t.try_into_vec_as::<i64>()
        .map_err(|e| anyhow!("reading top-k indices back from the device: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Full sort by (score desc, column asc): the reference.
    fn reference(row: &[f32], k: usize) -> Vec<usize> {
        let mut c: Vec<usize> = (0..row.len()).collect();
        c.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        c.truncate(k);
        c
    }

    #[test]
    fn partial_selection_equals_a_full_sort_with_ties() {
        let mut rng = Rng::new(5);
        let (rows, cols) = (37, 501);
        // few distinct values: many ties
        let s: Vec<f32> = (0..rows * cols)
            .map(|_| rng.below(40) as f32 / 7.0)
            .collect();
        for k in [1, 2, 20, 501, 900] {
            let t = top_k_host(&s, cols, k, None);
            assert_eq!(t.k, k.min(cols));
            for r in 0..rows {
                let row = &s[r * cols..(r + 1) * cols];
                assert_eq!(
                    t.row_cols(r),
                    reference(row, t.k).as_slice(),
                    "k {k} row {r}"
                );
                let want: Vec<f32> = t.row_cols(r).iter().map(|&c| row[c]).collect();
                assert_eq!(t.row_scores(r), want.as_slice());
            }
        }
    }

    #[test]
    fn key_mask_demotes_equal_keys() {
        let s = [0.9f32, 0.8, 0.7, 0.95, 0.1, 0.2];
        let mask = KeyMask {
            row_keys: &[7, 3],
            col_keys: &[7, 1, 2],
            fill: -1.0,
        };
        let t = top_k_host(&s, 3, 3, Some(mask));
        assert_eq!(t.row_cols(0), &[1, 2, 0]);
        assert_eq!(t.row_scores(0), &[0.8, 0.7, -1.0]);
        assert_eq!(t.row_cols(1), &[0, 2, 1]);
    }

    #[test]
    fn device_path_agrees_with_host_path() {
        // distinct scores: a backend's topk may cut a tie at the k-th place differently
        let mut rng = Rng::new(9);
        let mut s: Vec<f32> = (0..4 * 50).map(|i| i as f32 / 3.0).collect();
        for i in (1..s.len()).rev() {
            s.swap(i, rng.below(i + 1));
        }
        let host = top_k_host(&s, 50, 7, None);
        let t = Tensor::<2>::from_data(TensorData::new(s.clone(), [4, 50]), &Device::flex());
        // the backend topk, re-ordered, must give the same answer as the partial selection
        let (v, i) = t.clone().topk_with_indices(7, 1);
        let dev = sort_rows(read_f32(v).unwrap(), read_i64(i).unwrap(), 7);
        assert_eq!(dev, host);
    }
}
