//! k-means clustering of frozen features and the clustering metrics of method.md §5.4: cluster
//! accuracy (Hungarian matching), NMI, AMI, ARI, silhouette and Davies–Bouldin, as scikit-learn.

use super::{par_ranges, rows};
use crate::rng::Rng;
use anyhow::{Result, anyhow, ensure};
use burn::tensor::{Device, Tensor, TensorData};

/// Settings of [`kmeans`].
#[derive(Clone, Debug)]
pub struct KMeansConfig {
    /// Number of clusters.
    pub k: usize,
    /// Restarts from fresh k-means++ seeds; the run with the lowest inertia is kept.
    pub n_init: usize,
    /// Most Lloyd iterations per restart (each stops earlier once no assignment changes).
    pub max_iter: usize,
    pub seed: u64,
    /// Points per device distance computation (`chunk × k` distances exist at once).
    pub chunk: usize,
}

impl KMeansConfig {
    /// `k` clusters, 3 restarts, at most 300 iterations (scikit-learn's cap), seed 0.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            n_init: 3,
            max_iter: 300,
            seed: 0,
            chunk: 4096,
        }
    }
}

/// Result of [`kmeans`].
#[derive(Clone, Debug)]
pub struct KMeans {
    /// Cluster of every point, in `0..k`.
    pub labels: Vec<u32>,
    /// Centroids `[k, dim]`, row-major.
    pub centroids: Vec<f32>,
    /// Sum of squared distances of the points to their centroids.
    pub inertia: f64,
    /// Lloyd iterations of the kept run.
    pub iterations: usize,
}

/// The points of one k-means problem: host rows, their squared norms and a device copy.
struct Points<'a> {
    data: &'a [f32],
    dim: usize,
    n: usize,
    sq: Vec<f32>,
    tensor: Tensor<2>,
    chunk: usize,
    device: Device,
}

impl<'a> Points<'a> {
    fn new(data: &'a [f32], dim: usize, device: &Device, chunk: usize) -> Result<Self> {
        let n = rows(data, dim, "k-means features")?;
        let sq: Vec<f32> = data
            .chunks_exact(dim)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let tensor = Tensor::<2>::from_data(TensorData::new(data.to_vec(), [n, dim]), device);
        Ok(Self {
            data,
            dim,
            n,
            sq,
            tensor,
            chunk: chunk.max(1),
            device: device.clone(),
        })
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// For each chunk of points, `|c|² − 2 x·c` `[len, m]` on the device, given `m` centres.
    fn for_chunks(
        &self,
        centers: &[f32],
        mut f: impl FnMut(usize, Tensor<2>) -> Result<()>,
    ) -> Result<()> {
        let m = centers.len() / self.dim;
        let c = Tensor::<2>::from_data(
            TensorData::new(centers.to_vec(), [m, self.dim]),
            &self.device,
        );
        let csq: Vec<f32> = centers
            .chunks_exact(self.dim)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let csq = Tensor::<2>::from_data(TensorData::new(csq, [1, m]), &self.device);
        let ct = c.transpose();
        for start in (0..self.n).step_by(self.chunk) {
            let len = self.chunk.min(self.n - start);
            let x = self.tensor.clone().narrow(0, start, len);
            f(start, x.matmul(ct.clone()).mul_scalar(-2.0) + csq.clone())?;
        }
        Ok(())
    }

    /// Squared distances `[n, m]` (row-major) from every point to each of `m` centres.
    fn dists(&self, centers: &[f32]) -> Result<Vec<f32>> {
        let m = centers.len() / self.dim;
        let mut out = Vec::with_capacity(self.n * m);
        self.for_chunks(centers, |start, part| {
            let part = part
                .try_into_vec_as::<f32>()
                .map_err(|e| anyhow!("reading k-means distances back from the device: {e}"))?;
            for (r, row) in part.chunks_exact(m).enumerate() {
                let x2 = self.sq[start + r];
                out.extend(row.iter().map(|v| (v + x2).max(0.0)));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Index and squared distance of every point's nearest centre.
    fn nearest(&self, centers: &[f32]) -> Result<(Vec<u32>, Vec<f32>)> {
        let (mut labels, mut dists) = (Vec::with_capacity(self.n), Vec::with_capacity(self.n));
        self.for_chunks(centers, |start, part| {
            let (v, i) = part.min_dim_with_indices(1);
            let v = v
                .try_into_vec_as::<f32>()
                .map_err(|e| anyhow!("reading k-means distances back from the device: {e}"))?;
            let i = i
                .try_into_vec_as::<i64>()
                .map_err(|e| anyhow!("reading k-means assignments back from the device: {e}"))?;
            for (r, (v, i)) in v.into_iter().zip(i).enumerate() {
                dists.push((v + self.sq[start + r]).max(0.0));
                labels.push(i as u32);
            }
            Ok(())
        })?;
        Ok((labels, dists))
    }
}

/// k-means (§5.4) with greedy k-means++ seeding (2 + ln k candidates per centre, as
/// scikit-learn) and Lloyd iterations until no assignment changes or `max_iter`; the best of
/// `n_init` seeded restarts (lowest inertia) is returned. Distances run on `device`.
pub fn kmeans(x: &[f32], dim: usize, cfg: &KMeansConfig, device: &Device) -> Result<KMeans> {
    let points = Points::new(x, dim, device, cfg.chunk)?;
    ensure!(
        cfg.k >= 1 && cfg.k <= points.n,
        "k-means: k = {} clusters for {} points: pass 1 <= k <= the number of points",
        cfg.k,
        points.n
    );
    let mut best: Option<KMeans> = None;
    for run in 0..cfg.n_init.max(1) {
        let mut rng = Rng::keyed(&[cfg.seed, run as u64, 0x6B6D]);
        let init = kmeans_pp(&points, cfg.k, &mut rng)?;
        let result = lloyd(&points, init, cfg)?;
        if best.as_ref().is_none_or(|b| result.inertia < b.inertia) {
            best = Some(result);
        }
    }
    best.ok_or_else(|| anyhow!("k-means: no run finished"))
}

/// Greedy k-means++ seeding: centres drawn ∝ squared distance, best of several candidates.
fn kmeans_pp(p: &Points, k: usize, rng: &mut Rng) -> Result<Vec<f32>> {
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centers = p.row(rng.below(p.n)).to_vec();
    let mut closest = p.dists(&centers)?;
    for _ in 1..k {
        let mut cum = Vec::with_capacity(p.n);
        let mut total = 0.0f64;
        for &d in &closest {
            total += d as f64;
            cum.push(total);
        }
        let cand: Vec<usize> = (0..trials)
            .map(|_| {
                if total <= 0.0 {
                    return rng.below(p.n);
                }
                let r = rng.uniform() * total;
                cum.partition_point(|&c| c <= r).min(p.n - 1)
            })
            .collect();
        let cand_rows: Vec<f32> = cand.iter().flat_map(|&i| p.row(i).to_vec()).collect();
        let d = p.dists(&cand_rows)?;
        let pot = |t: usize| -> f64 {
            (0..p.n)
                .map(|i| closest[i].min(d[i * trials + t]) as f64)
                .sum()
        };
        let best = (0..trials)
            .map(|t| (pot(t), t))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(0, |(_, t)| t);
        centers.extend_from_slice(p.row(cand[best]));
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(d[i * trials + best]);
        }
    }
    Ok(centers)
}

/// Lloyd iterations from `centers` until no label changes or `max_iter` updates.
fn lloyd(p: &Points, mut centers: Vec<f32>, cfg: &KMeansConfig) -> Result<KMeans> {
    let (mut labels, mut dists) = p.nearest(&centers)?;
    let mut iterations = 0;
    for it in 1..=cfg.max_iter {
        centers = update_centers(p, &labels, &dists, cfg.k);
        let (new_labels, new_dists) = p.nearest(&centers)?;
        let changed = new_labels != labels;
        (labels, dists, iterations) = (new_labels, new_dists, it);
        if !changed {
            break;
        }
    }
    let inertia: f64 = dists.iter().map(|&d| d as f64).sum();
    Ok(KMeans {
        labels,
        centroids: centers,
        inertia,
        iterations,
    })
}

/// Means of the assigned points; an empty cluster takes the point farthest from its centre.
fn update_centers(p: &Points, labels: &[u32], dists: &[f32], k: usize) -> Vec<f32> {
    let dim = p.dim;
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        counts[l] += 1;
        for (s, &v) in sums[l * dim..(l + 1) * dim].iter_mut().zip(p.row(i)) {
            *s += v as f64;
        }
    }
    let mut far: Vec<usize> = (0..p.n).collect();
    far.sort_by(|&a, &b| dists[b].total_cmp(&dists[a]));
    let mut donors = far.into_iter();
    let mut centers = vec![0.0f32; k * dim];
    for c in 0..k {
        let out = &mut centers[c * dim..(c + 1) * dim];
        if counts[c] > 0 {
            let s = &sums[c * dim..(c + 1) * dim];
            out.iter_mut()
                .zip(s)
                .for_each(|(o, &s)| *o = (s / counts[c] as f64) as f32);
        } else if let Some(i) = donors.next() {
            out.copy_from_slice(p.row(i));
        }
    }
    centers
}

/// Relabels arbitrary ids to `0..m` in increasing id order (scikit-learn's LabelEncoder);
/// returns the codes and `m`.
fn encode(labels: &[u32]) -> (Vec<usize>, usize) {
    let mut ids = labels.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let codes = labels
        .iter()
        .map(|l| ids.binary_search(l).unwrap_or(0))
        .collect();
    (codes, ids.len())
}

/// Contingency table `[r, c]` (row-major, truth × prediction) after [`encode`]-ing both.
struct Contingency {
    table: Vec<u64>,
    r: usize,
    c: usize,
    n: u64,
}

impl Contingency {
    fn new(truth: &[u32], pred: &[u32]) -> Result<Self> {
        ensure!(
            truth.len() == pred.len(),
            "clustering metrics: {} true labels but {} predicted labels: pass one of each per sample",
            truth.len(),
            pred.len()
        );
        let (t, r) = encode(truth);
        let (p, c) = encode(pred);
        let mut table = vec![0u64; r * c];
        for (&i, &j) in t.iter().zip(&p) {
            table[i * c + j] += 1;
        }
        Ok(Self {
            table,
            r,
            c,
            n: truth.len() as u64,
        })
    }

    fn row_sums(&self) -> Vec<u64> {
        self.table
            .chunks_exact(self.c.max(1))
            .map(|r| r.iter().sum())
            .collect()
    }

    fn col_sums(&self) -> Vec<u64> {
        let mut s = vec![0u64; self.c];
        for row in self.table.chunks_exact(self.c.max(1)) {
            s.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        s
    }

    /// Mutual information in nats (clipped at 0, as scikit-learn).
    fn mutual_info(&self) -> f64 {
        let (a, b, n) = (self.row_sums(), self.col_sums(), self.n as f64);
        let mut mi = 0.0;
        for (i, ai) in a.iter().enumerate() {
            for (j, bj) in b.iter().enumerate() {
                let nij = self.table[i * self.c + j] as f64;
                if nij > 0.0 {
                    mi += nij / n * (nij * n / (*ai as f64 * *bj as f64)).ln();
                }
            }
        }
        mi.max(0.0)
    }
}

/// Entropy in nats of a labelling given its class sizes.
fn entropy(sizes: &[u64]) -> f64 {
    let n: u64 = sizes.iter().sum();
    if sizes.len() <= 1 || n == 0 {
        return 0.0;
    }
    let n = n as f64;
    sizes
        .iter()
        .filter(|&&s| s > 0)
        .map(|&s| -(s as f64 / n) * ((s as f64).ln() - n.ln()))
        .sum()
}

/// Normalised mutual information with arithmetic-mean normalisation (scikit-learn's default).
pub fn nmi(truth: &[u32], pred: &[u32]) -> Result<f64> {
    let t = Contingency::new(truth, pred)?;
    if t.r == t.c && t.r <= 1 {
        return Ok(1.0);
    }
    let mi = t.mutual_info();
    if mi == 0.0 {
        return Ok(0.0);
    }
    let norm = 0.5 * (entropy(&t.row_sums()) + entropy(&t.col_sums()));
    Ok(mi / norm)
}

/// ln(k!) for k in 0..=n.
fn log_factorials(n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n + 1);
    let mut acc = 0.0f64;
    v.push(0.0);
    for k in 1..=n {
        acc += (k as f64).ln();
        v.push(acc);
    }
    v
}

/// Expected mutual information of two random labellings with the table's marginals
/// (hypergeometric model, the formula of scikit-learn's `expected_mutual_information`).
fn expected_mutual_info(t: &Contingency) -> f64 {
    let (a, b) = (t.row_sums(), t.col_sums());
    if a.len() == 1 || b.len() == 1 {
        return 0.0;
    }
    let n = t.n as usize;
    let lf = log_factorials(n);
    let nf = n as f64;
    let mut emi = 0.0;
    for &ai in &a {
        let ai = ai as usize;
        for &bj in &b {
            let bj = bj as usize;
            let fixed = lf[ai] + lf[bj] + lf[n - ai] + lf[n - bj] - lf[n];
            let start = (ai + bj).saturating_sub(n).max(1);
            for nij in start..=ai.min(bj) {
                let term2 = nf.ln() + (nij as f64).ln() - (ai as f64).ln() - (bj as f64).ln();
                let gln = fixed - lf[nij] - lf[ai - nij] - lf[bj - nij] - lf[n + nij - ai - bj];
                emi += nij as f64 / nf * term2 * gln.exp();
            }
        }
    }
    emi
}

/// Adjusted mutual information, arithmetic normalisation (scikit-learn's default and formula).
pub fn ami(truth: &[u32], pred: &[u32]) -> Result<f64> {
    let t = Contingency::new(truth, pred)?;
    if t.r == t.c && t.r <= 1 {
        return Ok(1.0);
    }
    if t.r == 1 || t.c == 1 {
        return Ok(0.0);
    }
    let mi = t.mutual_info();
    let emi = expected_mutual_info(&t);
    let norm = 0.5 * (entropy(&t.row_sums()) + entropy(&t.col_sums()));
    let away_from_zero = |v: f64| {
        if v < 0.0 {
            v.min(-f64::EPSILON)
        } else {
            v.max(f64::EPSILON)
        }
    };
    Ok(away_from_zero(mi - emi) / away_from_zero(norm - emi))
}

/// Adjusted Rand index from the pair confusion matrix (exact integer arithmetic).
pub fn ari(truth: &[u32], pred: &[u32]) -> Result<f64> {
    let t = Contingency::new(truth, pred)?;
    let sq = |v: &[u64]| v.iter().map(|&x| (x as i128) * (x as i128)).sum::<i128>();
    let n = t.n as i128;
    let ss = sq(&t.table);
    let tp = ss - n;
    let fp = sq(&t.col_sums()) - ss;
    let fn_ = sq(&t.row_sums()) - ss;
    let tn = n * n - fp - fn_ - ss;
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = 2 * (tp * tn - fn_ * fp);
    let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    Ok(num as f64 / den as f64)
}

/// Cluster accuracy: the fraction of samples on the diagonal after the one-to-one matching of
/// clusters to classes that maximises it (Hungarian algorithm on the contingency table).
pub fn cluster_accuracy(truth: &[u32], pred: &[u32]) -> Result<f64> {
    let t = Contingency::new(truth, pred)?;
    if t.n == 0 {
        return Ok(0.0);
    }
    let w: Vec<f64> = t.table.iter().map(|&v| v as f64).collect();
    let matched: f64 = max_weight_matching(&w, t.r, t.c)
        .into_iter()
        .map(|(i, j)| w[i * t.c + j])
        .sum();
    Ok(matched / t.n as f64)
}

/// A maximum-weight one-to-one matching of the rows and columns of `w` `[r, c]`; returns the
/// matched `(row, col)` pairs (`min(r, c)` of them). O(n³) Hungarian algorithm with potentials
/// on the square zero-padded cost matrix `max(w) − w`.
pub fn max_weight_matching(w: &[f64], r: usize, c: usize) -> Vec<(usize, usize)> {
    let m = r.max(c);
    let top = w.iter().copied().fold(0.0f64, f64::max);
    let cost = |i: usize, j: usize| {
        if i < r && j < c {
            top - w[i * c + j]
        } else {
            top
        }
    };
    let col_of_row = hungarian_min(m, cost);
    col_of_row
        .into_iter()
        .enumerate()
        .filter(|&(i, j)| i < r && j < c)
        .collect()
}

/// Minimum-cost perfect assignment of an `m × m` cost matrix; returns the column of each row.
fn hungarian_min(m: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<usize> {
    // 1-based arrays: p[j] = row matched to column j (0 = none), u/v = potentials.
    let (mut u, mut v) = (vec![0.0f64; m + 1], vec![0.0f64; m + 1]);
    let (mut p, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=m {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let (i0, mut delta, mut j1) = (p[j0], f64::INFINITY, 0);
            for j in 1..=m {
                if !used[j] {
                    let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        (minv[j], way[j]) = (cur, j0);
                    }
                    if minv[j] < delta {
                        (delta, j1) = (minv[j], j);
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        while j0 != 0 {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        }
    }
    let mut col_of_row = vec![0usize; m];
    for j in 1..=m {
        if p[j] > 0 {
            col_of_row[p[j] - 1] = j - 1;
        }
    }
    col_of_row
}

fn euclid(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Checks features and labels of an internal metric; returns (codes, clusters, rows).
fn internal_input(
    x: &[f32],
    dim: usize,
    labels: &[u32],
    what: &str,
) -> Result<(Vec<usize>, usize, usize)> {
    let n = rows(x, dim, what)?;
    ensure!(
        labels.len() == n,
        "{what}: {} labels for {n} feature rows: pass one label per row",
        labels.len()
    );
    let (codes, k) = encode(labels);
    ensure!(
        k >= 2 && k < n,
        "{what}: {k} distinct label(s) for {n} samples: needs 2 <= clusters <= samples - 1"
    );
    Ok((codes, k, n))
}

/// Mean silhouette coefficient with euclidean distances (scikit-learn's `silhouette_score`);
/// samples alone in their cluster score 0. O(n² · dim), parallel over samples.
pub fn silhouette(x: &[f32], dim: usize, labels: &[u32]) -> Result<f64> {
    let (codes, k, n) = internal_input(x, dim, labels, "silhouette")?;
    let mut counts = vec![0usize; k];
    codes.iter().for_each(|&c| counts[c] += 1);
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let parts = par_ranges(n, |range| {
        let mut per = vec![0.0f64; k];
        let mut sum = 0.0f64;
        for i in range {
            per.fill(0.0);
            for j in 0..n {
                per[codes[j]] += euclid(row(i), row(j));
            }
            let own = codes[i];
            if counts[own] <= 1 {
                continue;
            }
            let a = per[own] / (counts[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own)
                .map(|c| per[c] / counts[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let m = a.max(b);
            if m > 0.0 {
                sum += (b - a) / m;
            }
        }
        sum
    });
    Ok(parts.iter().sum::<f64>() / n as f64)
}

/// Per-cluster means `[k, dim]` (f64) and sizes of the rows of `x` under `codes`.
fn centroids(x: &[f32], dim: usize, codes: &[usize], k: usize) -> (Vec<f64>, Vec<usize>) {
    let mut cent = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (row, &c) in x.chunks_exact(dim).zip(codes) {
        counts[c] += 1;
        cent[c * dim..(c + 1) * dim]
            .iter_mut()
            .zip(row)
            .for_each(|(s, &v)| *s += v as f64);
    }
    for (c, &count) in counts.iter().enumerate() {
        cent[c * dim..(c + 1) * dim]
            .iter_mut()
            .for_each(|s| *s /= count.max(1) as f64);
    }
    (cent, counts)
}

/// Davies–Bouldin index (scikit-learn's `davies_bouldin_score`): the mean over clusters of the
/// worst (intra_i + intra_j) / centroid distance; lower is better.
pub fn davies_bouldin(x: &[f32], dim: usize, labels: &[u32]) -> Result<f64> {
    let (codes, k, _) = internal_input(x, dim, labels, "Davies-Bouldin")?;
    let (cent, counts) = centroids(x, dim, &codes, k);
    let centroid = |c: usize| &cent[c * dim..(c + 1) * dim];
    let mut intra = vec![0.0f64; k];
    for (row, &c) in x.chunks_exact(dim).zip(&codes) {
        let d: f64 = row
            .iter()
            .zip(centroid(c))
            .map(|(&v, &m)| (v as f64 - m).powi(2))
            .sum();
        intra[c] += d.sqrt() / counts[c] as f64;
    }
    let between = |i: usize, j: usize| {
        centroid(i)
            .iter()
            .zip(centroid(j))
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    // scikit-learn returns 0 when all intra distances or all centroid distances are ~0.
    let intra_zero = intra.iter().all(|d| d.abs() <= 1e-8);
    let between_zero = (0..k).all(|i| (0..k).all(|j| between(i, j) <= 1e-8));
    if intra_zero || between_zero {
        return Ok(0.0);
    }
    let score = |i: usize| {
        (0..k)
            .filter(|&j| j != i)
            .map(|j| match between(i, j) {
                0.0 => 0.0,
                d => (intra[i] + intra[j]) / d,
            })
            .fold(0.0f64, f64::max)
    };
    Ok((0..k).map(score).sum::<f64>() / k as f64)
}

/// All §5.4 metrics of one clustering.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterMetrics {
    pub accuracy: f64,
    pub nmi: f64,
    pub ami: f64,
    pub ari: f64,
    pub silhouette: f64,
    pub davies_bouldin: f64,
}

/// Every §5.4 metric of the clustering `pred` of the features `x` against the labels `truth`
/// (silhouette and Davies–Bouldin are computed on `x` with the `pred` clusters).
pub fn cluster_metrics(
    x: &[f32],
    dim: usize,
    truth: &[u32],
    pred: &[u32],
) -> Result<ClusterMetrics> {
    Ok(ClusterMetrics {
        accuracy: cluster_accuracy(truth, pred)?,
        nmi: nmi(truth, pred)?,
        ami: ami(truth, pred)?,
        ari: ari(truth, pred)?,
        silhouette: silhouette(x, dim, pred)?,
        davies_bouldin: davies_bouldin(x, dim, pred)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force_best(w: &[f64], r: usize, c: usize) -> f64 {
        // every injective map of the smaller side into the larger one
        fn go(w: &[f64], r: usize, c: usize, i: usize, used: &mut Vec<bool>) -> f64 {
            if i == r {
                return 0.0;
            }
            let mut best = go(w, r, c, i + 1, used); // row i unmatched
            for j in 0..c {
                if !used[j] {
                    used[j] = true;
                    best = best.max(w[i * c + j] + go(w, r, c, i + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(w, r, c, 0, &mut vec![false; c])
    }

    #[test]
    fn hungarian_matches_brute_force_on_random_matrices() {
        let mut rng = Rng::new(7);
        for (r, c) in [(1, 1), (3, 3), (4, 6), (6, 4), (5, 5), (2, 7)] {
            for _ in 0..20 {
                let w: Vec<f64> = (0..r * c).map(|_| rng.below(10) as f64).collect();
                let m = max_weight_matching(&w, r, c);
                assert_eq!(m.len(), r.min(c));
                let mut rows_seen: Vec<usize> = m.iter().map(|p| p.0).collect();
                let mut cols_seen: Vec<usize> = m.iter().map(|p| p.1).collect();
                rows_seen.dedup();
                cols_seen.sort_unstable();
                cols_seen.dedup();
                assert_eq!((rows_seen.len(), cols_seen.len()), (m.len(), m.len()));
                let got: f64 = m.iter().map(|&(i, j)| w[i * c + j]).sum();
                assert_eq!(got, brute_force_best(&w, r, c), "{r}x{c} {w:?}");
            }
        }
    }

    #[test]
    fn identical_labellings_score_one_and_independent_ones_near_zero() {
        let truth: Vec<u32> = (0..300).map(|i| i % 6).collect();
        let renamed: Vec<u32> = truth.iter().map(|&l| 100 - 3 * l).collect();
        assert!((nmi(&truth, &renamed).unwrap() - 1.0).abs() < 1e-12);
        assert!((ami(&truth, &renamed).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(ari(&truth, &renamed).unwrap(), 1.0);
        assert_eq!(cluster_accuracy(&truth, &renamed).unwrap(), 1.0);
        let mut rng = Rng::new(3);
        let random: Vec<u32> = (0..300).map(|_| rng.below(6) as u32).collect();
        assert!(ami(&truth, &random).unwrap().abs() < 0.05);
        assert!(ari(&truth, &random).unwrap().abs() < 0.05);
    }

    #[test]
    fn kmeans_recovers_three_separated_blobs() {
        let mut rng = Rng::new(11);
        let centers = [[0.0, 0.0, 0.0], [10.0, 0.0, 5.0], [0.0, -10.0, 5.0]];
        let (mut x, mut truth) = (Vec::new(), Vec::new());
        for i in 0..150 {
            let c = i % 3;
            x.extend(centers[c].iter().map(|&m| (m + rng.normal()) as f32));
            truth.push(c as u32);
        }
        let km = kmeans(&x, 3, &KMeansConfig::new(3), &Device::flex()).unwrap();
        assert_eq!(cluster_accuracy(&truth, &km.labels).unwrap(), 1.0);
        assert!((nmi(&truth, &km.labels).unwrap() - 1.0).abs() < 1e-12);
        // inertia ≈ 150 points × 3 dims × unit variance
        assert!(km.inertia > 300.0 && km.inertia < 600.0, "{}", km.inertia);
        let m = cluster_metrics(&x, 3, &truth, &km.labels).unwrap();
        assert!(m.silhouette > 0.7 && m.davies_bouldin < 0.5, "{m:?}");
    }

    #[test]
    fn kmeans_is_seeded_and_fills_every_cluster() {
        let mut rng = Rng::new(5);
        let x: Vec<f32> = (0..400).map(|_| rng.normal() as f32).collect();
        let cfg = KMeansConfig::new(8);
        let a = kmeans(&x, 2, &cfg, &Device::flex()).unwrap();
        let b = kmeans(&x, 2, &cfg, &Device::flex()).unwrap();
        assert_eq!(a.labels, b.labels);
        let mut used = a.labels.clone();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used.len(), 8);
        let e = kmeans(&x, 2, &KMeansConfig::new(500), &Device::flex()).unwrap_err();
        assert!(e.to_string().contains("k = 500"), "{e}");
    }

    #[test]
    fn internal_metrics_reject_a_single_cluster() {
        let e = silhouette(&[0.0, 1.0, 2.0], 1, &[4, 4, 4])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 distinct label"), "{e}");
    }
}
