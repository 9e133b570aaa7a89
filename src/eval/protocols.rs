//! The §5 protocols behind one call: kNN, linear probe, low-shot and clustering of one block's
//! features, as `mimr eval` and the online evaluation of `mimr refine` both run them.

use super::{cluster, knn, logreg, probe};
use anyhow::{Result, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One evaluation protocol of method.md §5.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// §5.1 kNN classification.
    Knn,
    /// §5.2 linear probe (SGD, LR grid).
    Probe,
    /// §5.3 low-shot logistic regression.
    Lowshot,
    /// §5.4 k-means clustering metrics.
    Cluster,
}

impl std::str::FromStr for Protocol {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "knn" => Self::Knn,
            "probe" => Self::Probe,
            "lowshot" => Self::Lowshot,
            "cluster" => Self::Cluster,
            other => bail!("unknown protocol `{other}` (use knn, probe, lowshot, cluster)"),
        })
    }
}

/// Labelled features of one split: row-major `[labels.len(), dim]`.
#[derive(Clone, Copy)]
pub struct Features<'a> {
    pub x: &'a [f32],
    pub labels: &'a [u32],
    pub dim: usize,
}

/// Settings shared by the protocols.
#[derive(Clone, Debug)]
pub struct Options {
    /// k values of the kNN vote (one neighbour search serves all).
    pub knn_ks: Vec<usize>,
    pub knn_tau: f32,
    pub probe: probe::ProbeConfig,
    pub lowshot: logreg::LowShotConfig,
}

impl Default for Options {
    /// The paper's settings: k ∈ {1, 10, 20}, τ = 0.07, and the §5.2/§5.3 defaults.
    fn default() -> Self {
        Self {
            knn_ks: vec![1, 10, 20],
            knn_tau: knn::DEFAULT_TAU,
            probe: probe::ProbeConfig::default(),
            lowshot: logreg::LowShotConfig::default(),
        }
    }
}

/// Number of classes the labels of both splits span (largest label + 1; 0 without labels).
pub fn n_classes(train: &[u32], test: &[u32]) -> usize {
    train
        .iter()
        .chain(test)
        .max()
        .map_or(0, |m| *m as usize + 1)
}

/// Runs `protocols` with `train` as the bank / training set and `test` as queries; returns one
/// JSON object with a key per protocol (`knn.k10`, `probe.best_accuracy`, `cluster.nmi`, …);
/// a protocol listed twice runs once. Clustering runs k-means (k = number of classes) on the L2-normalised test features.
pub fn evaluate(
    train: Features,
    test: Features,
    n_classes: usize,
    protocols: &[Protocol],
    opts: &Options,
    device: &Device,
) -> Result<Value> {
    let mut r = Map::new();
    let d = train.dim;
    for p in protocols {
        if r.contains_key(name(*p)) {
            continue;
        }
        let v = match p {
            Protocol::Knn => {
                let acc = knn::knn_accuracy(
                    train.x,
                    train.labels,
                    test.x,
                    test.labels,
                    d,
                    n_classes,
                    &opts.knn_ks,
                    opts.knn_tau,
                    device,
                    1024,
                )?;
                Value::Object(
                    acc.iter()
                        .map(|(k, a)| (format!("k{k}"), json!(a)))
                        .collect(),
                )
            }
            Protocol::Probe => {
                let (xtr, ytr, xte, yte) = (train.x, train.labels, test.x, test.labels);
                let p = probe::linear_probe(xtr, ytr, xte, yte, d, n_classes, &opts.probe)?;
                json!({"best_accuracy": p.best_accuracy, "best_lr": p.best_lr})
            }
            Protocol::Lowshot => {
                let (xtr, ytr, xte, yte) = (train.x, train.labels, test.x, test.labels);
                let ls = logreg::lowshot(xtr, ytr, xte, yte, d, n_classes, &opts.lowshot)?;
                Value::Object(
                    ls.iter()
                        .map(|l| (format!("{}shot", l.shots), json!(l.mean)))
                        .collect(),
                )
            }
            Protocol::Cluster => clustering(test, n_classes, device)?,
        };
        r.insert(name(*p).into(), v);
    }
    Ok(Value::Object(r))
}

/// The protocol's key in results and configs.
pub fn name(p: Protocol) -> &'static str {
    match p {
        Protocol::Knn => "knn",
        Protocol::Probe => "probe",
        Protocol::Lowshot => "lowshot",
        Protocol::Cluster => "cluster",
    }
}

fn clustering(test: Features, n_classes: usize, device: &Device) -> Result<Value> {
    let mut x = test.x.to_vec();
    knn::l2_normalize_rows(&mut x, test.dim);
    let km = cluster::kmeans(&x, test.dim, &cluster::KMeansConfig::new(n_classes), device)?;
    let m = cluster::cluster_metrics(&x, test.dim, test.labels, &km.labels)?;
    Ok(
        json!({"acc": m.accuracy, "nmi": m.nmi, "ami": m.ami, "ari": m.ari,
        "silhouette": m.silhouette, "davies_bouldin": m.davies_bouldin}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hot_features_score_perfectly_in_every_cheap_protocol() {
        // 3 classes, 8 points each; features = one-hot label plus a tiny per-point offset
        let n = 24;
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                let mut r = [0.0f32; 4];
                r[i % 3] = 1.0;
                r[3] = i as f32 * 1e-3;
                r
            })
            .collect();
        // disjoint halves, every class in both
        let half = |r: std::ops::Range<usize>| Features {
            x: &x[r.start * 4..r.end * 4],
            labels: &labels[r],
            dim: 4,
        };
        let opts = Options {
            knn_ks: vec![1, 5],
            ..Options::default()
        };
        // a repeated protocol runs once
        let protos = [Protocol::Knn, Protocol::Cluster, Protocol::Knn];
        let r = evaluate(
            half(0..12),
            half(12..24),
            3,
            &protos,
            &opts,
            &Device::flex(),
        )
        .unwrap();
        assert_eq!(r.as_object().map(|o| o.len()), Some(2), "{r}");
        assert_eq!(r["knn"]["k1"], json!(1.0));
        assert_eq!(r["knn"]["k5"], json!(1.0));
        assert!(
            (r["cluster"]["nmi"].as_f64().unwrap() - 1.0).abs() < 1e-9,
            "{r}"
        );
        assert!(
            (r["cluster"]["acc"].as_f64().unwrap() - 1.0).abs() < 1e-9,
            "{r}"
        );
        assert!(r.get("probe").is_none());
    }

    #[test]
    fn protocol_names_round_trip_and_unknown_ones_are_named() {
        for p in [
            Protocol::Knn,
            Protocol::Probe,
            Protocol::Lowshot,
            Protocol::Cluster,
        ] {
            assert_eq!(name(p).parse::<Protocol>().unwrap(), p);
        }
        let e = "knm".parse::<Protocol>().unwrap_err().to_string();
        assert!(e.contains("`knm`") && e.contains("knn, probe"), "{e}");
    }
}
