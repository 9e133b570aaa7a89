//! Host k-means for colouring the embedding map: k-means++ seeding and Lloyd iterations, with
//! fixed-size parallel chunks so that labels depend only on the data, `k`, the seed and `iters`.

use super::{Features, par_chunks};
use crate::rng::Rng;

/// Rows per parallel task.
const CHUNK: usize = 2048;

/// k-means++ seeding (centres drawn ∝ squared distance to the nearest chosen one) and Lloyd
/// iterations (at most `iters`; stops when no label changes), deterministic from `seed`. Returns
/// a cluster id in `0..min(k, n)` per row; `k = 0` or `dim = 0` put every row in cluster 0. A
/// cluster left empty takes the point farthest from its centre. Non-finite values are read as 0.
pub fn kmeans(x: &Features, k: usize, seed: u64, iters: usize) -> Vec<u32> {
    let x = x.sanitized();
    let k = k.min(x.n);
    if k <= 1 || x.dim == 0 {
        return vec![0; x.n];
    }
    let mut rng = Rng::keyed(&[seed, 0x6B6D_6561_6E73]);
    let mut centres = seed_plus_plus(&x, k, &mut rng);
    let (mut labels, mut dists) = assign(&x, &centres);
    for _ in 0..iters {
        centres = update(&x, &labels, &dists, k);
        let (new_labels, new_dists) = assign(&x, &centres);
        let changed = new_labels != labels;
        (labels, dists) = (new_labels, new_dists);
        if !changed {
            break;
        }
    }
    labels
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++: the first centre uniformly, each next one ∝ the squared distance to the nearest
/// chosen centre (uniformly when every point coincides with a centre).
fn seed_plus_plus(x: &Features, k: usize, rng: &mut Rng) -> Vec<f32> {
    let mut centres = x.row(rng.below(x.n)).to_vec();
    let mut closest = distances_to(x, &centres);
    for _ in 1..k {
        let total: f64 = closest.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let target = rng.uniform() * total;
            let mut acc = 0.0f64;
            closest
                .iter()
                .position(|&d| {
                    acc += d as f64;
                    acc > target
                })
                .unwrap_or(x.n - 1)
        } else {
            rng.below(x.n)
        };
        let c = x.row(pick).to_vec();
        let d = distances_to(x, &c);
        closest.iter_mut().zip(d).for_each(|(a, b)| *a = a.min(b));
        centres.extend(c);
    }
    centres
}

/// Squared distance of every row to one point.
fn distances_to(x: &Features, c: &[f32]) -> Vec<f32> {
    par_chunks(x.n, CHUNK, |r| {
        r.map(|i| sq_dist(x.row(i), c)).collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Nearest centre (the first of equals) and its squared distance for every row.
fn assign(x: &Features, centres: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let parts = par_chunks(x.n, CHUNK, |r| {
        r.map(|i| {
            let row = x.row(i);
            centres
                .chunks_exact(x.dim)
                .map(|c| sq_dist(row, c))
                .enumerate()
                .fold((0u32, f32::INFINITY), |best, (j, d)| {
                    if d < best.1 { (j as u32, d) } else { best }
                })
        })
        .collect::<Vec<_>>()
    });
    parts.into_iter().flatten().unzip()
}

/// New centres: the means of their points; an empty cluster takes the farthest unused point.
fn update(x: &Features, labels: &[u32], dists: &[f32], k: usize) -> Vec<f32> {
    let d = x.dim;
    let parts = par_chunks(x.n, CHUNK, |r| {
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0usize; k];
        for i in r {
            let l = labels[i] as usize;
            counts[l] += 1;
            let s = &mut sums[l * d..(l + 1) * d];
            s.iter_mut()
                .zip(x.row(i))
                .for_each(|(a, &v)| *a += v as f64);
        }
        (sums, counts)
    });
    let (mut sums, mut counts) = (vec![0.0f64; k * d], vec![0usize; k]);
    for (s, c) in parts {
        sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
        counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
    }
    let mut far = farthest_first(dists);
    let mut centres = vec![0.0f32; k * d];
    for j in 0..k {
        let out = &mut centres[j * d..(j + 1) * d];
        if counts[j] == 0 {
            if let Some(i) = far.next() {
                out.copy_from_slice(x.row(i));
            }
        } else {
            let s = &sums[j * d..(j + 1) * d];
            let c = counts[j] as f64;
            out.iter_mut().zip(s).for_each(|(o, v)| *o = (v / c) as f32);
        }
    }
    centres
}

/// Row indices by decreasing distance to their centre (ties by index), consumed lazily by the
/// empty clusters only.
fn farthest_first(dists: &[f32]) -> impl Iterator<Item = usize> + '_ {
    let mut order: Option<Vec<usize>> = None;
    let mut next = 0usize;
    std::iter::from_fn(move || {
        let o = order.get_or_insert_with(|| {
            let mut o: Vec<usize> = (0..dists.len()).collect();
            o.sort_by(|&a, &b| dists[b].total_cmp(&dists[a]).then(a.cmp(&b)));
            o
        });
        next += 1;
        o.get(next - 1).copied()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_degenerate_inputs() {
        let x = Features::new(3, 1, vec![0.0, 10.0, 20.0]).unwrap();
        assert_eq!(kmeans(&x, 0, 1, 10), vec![0, 0, 0]);
        assert_eq!(kmeans(&x, 1, 1, 10), vec![0, 0, 0]);
        let mut all = kmeans(&x, 10, 1, 10);
        all.sort();
        assert_eq!(all, vec![0, 1, 2], "k > n: every point its own cluster");
        assert!(kmeans(&Features::new(0, 4, vec![]).unwrap(), 3, 1, 10).is_empty());
        assert_eq!(
            kmeans(&Features::new(2, 0, vec![]).unwrap(), 3, 1, 10),
            vec![0, 0]
        );
        let same = Features::new(4, 2, vec![1.0; 8]).unwrap();
        assert!(kmeans(&same, 3, 1, 10).iter().all(|&l| l < 3));
    }

    #[test]
    fn an_empty_cluster_takes_the_farthest_point() {
        // two centres on the same point: cluster 1 is empty and takes the far point 2
        let x = Features::new(3, 1, vec![0.0, 0.0, 9.0]).unwrap();
        let labels = vec![0, 0, 0];
        let dists = [0.0, 0.0, 81.0];
        assert_eq!(update(&x, &labels, &dists, 2), vec![3.0, 9.0]);
    }
}
