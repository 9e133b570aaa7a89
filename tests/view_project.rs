//! The embedding map's numerics (`view::project`) against numpy/scipy/scikit-learn references
//! (tests/fixtures/project_*.safetensors, from tools/make_project_fixtures.py) and on blobs.

use mimr::rng::Rng;
use mimr::view::project::affinity::{Knn, SparseP, joint_probabilities, knn};
use mimr::view::project::gradient::{gradient_bh, gradient_exact, kl_divergence};
use mimr::view::project::{
    Features, TsneConfig, TsneError, align, cosine_top_k, kmeans, pca2, tsne,
};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::time::Instant;

/// A fixture's tensors as f64 with their shapes.
fn fixture(name: &str) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let path = format!(
        "{}/tests/fixtures/project_{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = HashMap::new();
    for (key, view) in st.tensors() {
        let raw = view.data();
        let values: Vec<f64> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{key}: unexpected dtype {other:?}"),
        };
        out.insert(key.to_string(), (view.shape().to_vec(), values));
    }
    out
}

fn features(t: &(Vec<usize>, Vec<f64>)) -> Features {
    Features::new(t.0[0], t.0[1], t.1.iter().map(|&v| v as f32).collect()).unwrap()
}

fn points(t: &(Vec<usize>, Vec<f64>)) -> Vec<[f32; 2]> {
    t.1.chunks_exact(2)
        .map(|p| [p[0] as f32, p[1] as f32])
        .collect()
}

fn max_abs(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, |m, x| m.max(x.abs()))
}

/// Gaussian blobs: `k` centres with std `spread` in `dim` dimensions, unit noise, labels.
fn blobs(n: usize, dim: usize, k: usize, spread: f64, seed: u64) -> (Features, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let centres: Vec<f64> = (0..k * dim).map(|_| rng.normal() * spread).collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    let data = labels
        .iter()
        .flat_map(|&l| {
            let c = &centres[l as usize * dim..(l as usize + 1) * dim];
            c.iter()
                .map(|&c| (c + rng.normal()) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    (Features::new(n, dim, data).unwrap(), labels)
}

/// Adjusted Rand index by pair counting (exact, independent of the crate's metrics).
fn ari(a: &[u32], b: &[u32]) -> f64 {
    let mut table: HashMap<(u32, u32), u64> = HashMap::new();
    let (mut ra, mut rb): (HashMap<u32, u64>, HashMap<u32, u64>) = Default::default();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *ra.entry(x).or_default() += 1;
        *rb.entry(y).or_default() += 1;
    }
    let pairs = |m: &mut dyn Iterator<Item = &u64>| {
        m.map(|&c| (c * c.saturating_sub(1) / 2) as f64)
            .sum::<f64>()
    };
    let (ij, i, j) = (
        pairs(&mut table.values()),
        pairs(&mut ra.values()),
        pairs(&mut rb.values()),
    );
    let total = (a.len() * (a.len() - 1) / 2) as f64;
    let expected = i * j / total;
    (ij - expected) / ((i + j) / 2.0 - expected)
}

/// Mean fraction of each point's 10 nearest embedded neighbours that share its label.
fn knn_label_agreement(y: &[[f32; 2]], labels: &[u32]) -> f64 {
    let mut total = 0.0;
    for (i, p) in y.iter().enumerate() {
        let mut d: Vec<(f32, usize)> = y
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2), j))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        total += d[..10].iter().filter(|e| labels[e.1] == labels[i]).count() as f64 / 10.0;
    }
    total / y.len() as f64
}

#[test]
fn pca_scores_match_sklearn_with_the_sign_convention() {
    let f = fixture("pca");
    let scores = pca2(&features(&f["x"]));
    let reference = &f["scores"].1;
    for c in 0..2 {
        let scale = max_abs(reference.iter().skip(c).step_by(2).copied());
        let err = max_abs(
            scores
                .iter()
                .zip(reference.chunks_exact(2))
                .map(|(s, r)| s[c] as f64 - r[c]),
        );
        assert!(
            err <= 1e-4 * scale,
            "component {c}: max error {err} (scale {scale})"
        );
    }
}

#[test]
fn procrustes_undoes_a_known_reflection_rotation_scale_and_shift() {
    let mut rng = Rng::new(11);
    let reference: Vec<[f32; 2]> = (0..50)
        .map(|_| [rng.normal() as f32, rng.normal() as f32])
        .collect();
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let moving: Vec<[f32; 2]> = reference
        .iter()
        .map(|p| {
            let (x, y) = (p[0] as f64, -(p[1] as f64)); // reflection, then rotation, scale, shift
            [
                (3.0 * (c * x - s * y) + 7.0) as f32,
                (3.0 * (s * x + c * y) - 2.0) as f32,
            ]
        })
        .collect();
    let back = align(&reference, &moving);
    let err = max_abs(
        back.iter()
            .zip(&reference)
            .flat_map(|(a, b)| [a[0] - b[0], a[1] - b[1]])
            .map(f64::from),
    );
    assert!(err < 1e-5, "max error {err}");
}

#[test]
fn procrustes_on_noisy_points_matches_the_svd_solution_and_scipy() {
    let f = fixture("procrustes");
    let (reference, moving) = (points(&f["reference"]), points(&f["moving"]));
    let aligned = align(&reference, &moving);
    let expected = &f["aligned"].1;
    let err = max_abs(
        aligned
            .iter()
            .flatten()
            .zip(expected)
            .map(|(&a, b)| a as f64 - b),
    );
    assert!(
        err < 1e-5 * max_abs(expected.iter().copied()),
        "max error {err}"
    );
    // scipy's disparity: residual / ‖reference − its mean‖²
    let n = reference.len() as f64;
    let mean = [0, 1].map(|c| reference.iter().map(|p| p[c] as f64).sum::<f64>() / n);
    let spread: f64 = reference
        .iter()
        .map(|p| (p[0] as f64 - mean[0]).powi(2) + (p[1] as f64 - mean[1]).powi(2))
        .sum();
    let residual: f64 = aligned
        .iter()
        .zip(&reference)
        .map(|(a, r)| ((a[0] - r[0]) as f64).powi(2) + ((a[1] - r[1]) as f64).powi(2))
        .sum();
    let disparity = f["disparity"].1[0];
    assert!(
        (residual / spread - disparity).abs() < 1e-5 * disparity,
        "{} vs {disparity}",
        residual / spread
    );
}

#[test]
fn kmeans_recovers_well_separated_blobs() {
    let (x, labels) = blobs(400, 16, 4, 20.0, 3);
    for seed in 0..3 {
        let found = kmeans(&x, 4, seed, 50);
        assert_eq!(ari(&labels, &found), 1.0, "seed {seed}");
    }
}

#[test]
fn kmeans_is_deterministic_and_caps_k_at_n() {
    let (x, _) = blobs(300, 8, 6, 1.0, 4); // overlapping: many Lloyd steps
    let a = kmeans(&x, 5, 9, 100);
    assert_eq!(a, kmeans(&x, 5, 9, 100));
    assert!(a.iter().all(|&l| l < 5));
    let small = Features::new(3, 2, vec![0.0, 0.0, 5.0, 5.0, -5.0, 5.0]).unwrap();
    let mut ids = kmeans(&small, 8, 1, 10);
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2]);
}

#[test]
fn cosine_top_k_matches_numpy() {
    let f = fixture("cosine");
    let x = features(&f["x"]);
    let (index, sim) = (&f["top_index"].1, &f["top_sim"].1);
    for (q, &query) in f["queries"].1.iter().enumerate() {
        let top = cosine_top_k(&x, query as usize, 10);
        let got: Vec<usize> = top.iter().map(|p| p.0).collect();
        let want: Vec<usize> = index[q * 10..(q + 1) * 10]
            .iter()
            .map(|&i| i as usize)
            .collect();
        assert_eq!(got, want, "query {query}");
        for (t, s) in top.iter().zip(&sim[q * 10..(q + 1) * 10]) {
            assert!(
                (t.1 as f64 - s).abs() < 1e-5,
                "query {query}: {} vs {s}",
                t.1
            );
        }
    }
}

fn fixture_knn(f: &HashMap<String, (Vec<usize>, Vec<f64>)>) -> Knn {
    let (shape, index) = &f["knn_index"];
    Knn {
        n: shape[0],
        k: shape[1],
        indices: index.iter().map(|&i| i as usize).collect(),
        sq_dists: f["knn_sqdist"].1.iter().map(|&d| d as f32).collect(),
    }
}

#[test]
fn tsne_knn_matches_sklearn() {
    let f = fixture("tsne");
    let want = fixture_knn(&f);
    let got = knn(&features(&f["x"]), want.k);
    assert_eq!(got.indices, want.indices);
    for (a, b) in got.sq_dists.iter().zip(&want.sq_dists) {
        assert!((a - b).abs() <= 1e-4 * b, "{a} vs {b}");
    }
}

#[test]
fn tsne_joint_p_matches_sklearn() {
    let f = fixture("tsne");
    let p = joint_probabilities(&fixture_knn(&f), f["perplexity"].1[0] as f32);
    let as_usize = |k: &str| f[k].1.iter().map(|&v| v as usize).collect::<Vec<_>>();
    assert_eq!(p.indptr, as_usize("p_indptr"));
    assert_eq!(p.indices, as_usize("p_indices"));
    for (a, b) in p.values.iter().zip(&f["p_values"].1) {
        assert!((a - b).abs() <= 1e-5 * b, "{a} vs {b}");
    }
}

fn fixture_p(f: &HashMap<String, (Vec<usize>, Vec<f64>)>) -> SparseP {
    let as_usize = |k: &str| f[k].1.iter().map(|&v| v as usize).collect::<Vec<_>>();
    SparseP {
        n: f["y"].0[0],
        indptr: as_usize("p_indptr"),
        indices: as_usize("p_indices"),
        values: f["p_values"].1.clone(),
    }
}

fn relative_error(a: &[[f64; 2]], b: &[f64]) -> f64 {
    let diff: f64 = a
        .iter()
        .flatten()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    (diff / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
}

#[test]
fn tsne_gradients_match_sklearn() {
    let f = fixture("tsne");
    let p = fixture_p(&f);
    let y: Vec<[f64; 2]> = f["y"].1.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    let exact = &f["grad_exact"].1;
    let scale = max_abs(exact.iter().copied());
    for (name, g) in [
        ("bh θ=0", gradient_bh(&p, &y, 0.0, 1.0)),
        ("exact", gradient_exact(&p, &y, 1.0)),
    ] {
        let err = max_abs(g.iter().flatten().zip(exact).map(|(a, b)| a - b));
        assert!(
            err <= 1e-5 * scale,
            "{name}: max error {err} (scale {scale})"
        );
    }
    let kl = kl_divergence(&p, &y);
    assert!(
        (kl - f["kl"].1[0]).abs() < 1e-6 * kl,
        "KL {kl} vs {}",
        f["kl"].1[0]
    );
    // θ = 0.5: both Barnes–Hut trees approximate the exact gradient to about a percent
    let bh = gradient_bh(&p, &y, 0.5, 1.0);
    let (ours, sklearn) = (
        relative_error(&bh, exact),
        relative_error(&bh, &f["grad_bh"].1),
    );
    assert!(
        ours < 0.03 && sklearn < 0.03,
        "vs exact {ours}, vs sklearn's BH {sklearn}"
    );
}

#[test]
fn tsne_separates_five_blobs_deterministically() {
    let (x, labels) = blobs(1000, 50, 5, 3.0, 7);
    let start = Instant::now();
    let y = tsne(&x, &TsneConfig::default(), |_, _| true).unwrap();
    eprintln!("t-SNE n=1000 dim=50: {:.2?}", start.elapsed());
    let agreement = knn_label_agreement(&y, &labels);
    assert!(agreement >= 0.95, "10-NN label agreement {agreement}");
    let short = TsneConfig {
        iterations: 40,
        ..Default::default()
    };
    assert_eq!(tsne(&x, &short, |_, _| true), tsne(&x, &short, |_, _| true));
}

#[test]
fn tsne_cancels_when_progress_says_stop() {
    let (x, _) = blobs(200, 10, 3, 3.0, 8);
    let mut calls = Vec::new();
    let result = tsne(&x, &TsneConfig::default(), |it, e| {
        calls.push(it);
        assert_eq!(e.len(), 200);
        it < 50
    });
    assert_eq!(result, Err(TsneError::Cancelled));
    assert_eq!(calls, vec![10, 20, 30, 40, 50]);
}

/// Timing for the app: `cargo test --release --test view_project -- --ignored --nocapture`.
#[test]
#[ignore]
fn tsne_timing_10k_points_dim_384() {
    let (x, _) = blobs(10_000, 384, 20, 1.5, 9);
    let start = Instant::now();
    let k = 91;
    let graph = knn(&x, k);
    let t_knn = start.elapsed();
    let _p = joint_probabilities(&graph, 30.0);
    let t_p = start.elapsed();
    let y = tsne(&x, &TsneConfig::default(), |_, _| true).unwrap();
    eprintln!(
        "threads {}: kNN {t_knn:.2?}, +P {t_p:.2?}; full t-SNE {:.2?}",
        rayon::current_num_threads(),
        start.elapsed() - t_p
    );
    assert_eq!(y.len(), 10_000);
}
