//! Cosine nearest neighbours of one row (the map's "similar samples" list): one pass of dot
//! products over all rows, then a partial selection of the k best.

use super::{Features, dot, par_chunks};
use std::cmp::Ordering;

/// The `k` rows most cosine-similar to row `query` (itself excluded), similarity descending, ties
/// by index ascending. A zero row (or one read as zero: non-finite values count as 0) has
/// similarity 0 to everything. `query` out of range → empty.
pub fn cosine_top_k(x: &Features, query: usize, k: usize) -> Vec<(usize, f32)> {
    let x = x.sanitized();
    if query >= x.n || k == 0 {
        return Vec::new();
    }
    let q = x.row(query);
    let qn = norm(q);
    let sims = par_chunks(x.n, 4096, |r| {
        r.filter(|&i| i != query)
            .map(|i| {
                let row = x.row(i);
                let den = qn * norm(row);
                let s = if den > 0.0 { dot(q, row) / den } else { 0.0 };
                (i, s)
            })
            .collect::<Vec<_>>()
    });
    let mut all: Vec<(usize, f32)> = sims.into_iter().flatten().collect();
    top_k(&mut all, k)
}

/// The `k` best pairs of `all` in (score desc, index asc) order.
pub(crate) fn top_k(all: &mut Vec<(usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    let order = |a: &(usize, f32), b: &(usize, f32)| -> Ordering {
        b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
    };
    if k < all.len() {
        all.select_nth_unstable_by(k, order);
        all.truncate(k);
    }
    all.sort_by(order);
    std::mem::take(all)
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_are_broken_by_index_and_self_is_excluded() {
        let x =
            Features::new(5, 2, vec![1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0]).unwrap();
        let top = cosine_top_k(&x, 0, 3);
        assert_eq!(top.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        assert!((top[0].1 - 1.0).abs() < 1e-6 && top[2].1.abs() < 1e-6);
        assert_eq!(cosine_top_k(&x, 0, 10).len(), 4);
    }

    #[test]
    fn degenerate_inputs_are_handled() {
        let x = Features::new(2, 2, vec![0.0, 0.0, f32::NAN, 1.0]).unwrap();
        assert_eq!(cosine_top_k(&x, 0, 1), vec![(1, 0.0)]);
        assert!(cosine_top_k(&x, 5, 1).is_empty());
        assert!(cosine_top_k(&x, 0, 0).is_empty());
        let one = Features::new(1, 3, vec![1.0; 3]).unwrap();
        assert!(cosine_top_k(&one, 0, 4).is_empty());
    }
}
