//! The evaluation metrics of src/eval against scikit-learn / scipy / numpy reference values in
//! tests/fixtures/eval_metrics.json (written by tools/make_eval_fixtures.py), plus closed forms.

use burn::tensor::Device;
use mimr::eval::cluster::{
    KMeansConfig, ami, ari, cluster_accuracy, davies_bouldin, kmeans, nmi, silhouette,
};
use mimr::eval::knn::{accuracy, knn_accuracy, knn_classify, standardize};
use mimr::eval::logreg::{LogRegConfig, fit, preprocess};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Fixture {
    clustering: Vec<LabelCase>,
    internal: Vec<InternalCase>,
    knn: KnnCase,
    logreg: LogRegCase,
}

#[derive(Deserialize)]
struct LabelCase {
    name: String,
    truth: Vec<u32>,
    pred: Vec<u32>,
    nmi: f64,
    ami: f64,
    ari: f64,
    acc: f64,
}

#[derive(Deserialize)]
struct InternalCase {
    name: String,
    dim: usize,
    x: Vec<f32>,
    labels: Vec<u32>,
    silhouette: f64,
    davies_bouldin: f64,
}

#[derive(Deserialize)]
struct KnnCase {
    dim: usize,
    n_classes: usize,
    tau: f32,
    train: Vec<f32>,
    train_labels: Vec<u32>,
    test: Vec<f32>,
    test_labels: Vec<u32>,
    predictions: BTreeMap<String, Vec<u32>>,
    accuracy: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct LogRegCase {
    dim: usize,
    n_classes: usize,
    lambda: f64,
    train: Vec<f32>,
    train_labels: Vec<u32>,
    test: Vec<f32>,
    test_labels: Vec<u32>,
    coef: Vec<f64>,
    predictions: Vec<u32>,
    accuracy: f64,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/eval_metrics.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (regenerate with tools/make_eval_fixtures.py)"));
    serde_json::from_str(&text).expect("eval_metrics.json does not parse")
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-4,
        "{what}: got {got}, sklearn says {want}"
    );
}

#[test]
fn label_metrics_match_sklearn() {
    let f = fixture();
    assert!(f.clustering.len() >= 5);
    for c in &f.clustering {
        close(
            nmi(&c.truth, &c.pred).unwrap(),
            c.nmi,
            &format!("{} NMI", c.name),
        );
        close(
            ami(&c.truth, &c.pred).unwrap(),
            c.ami,
            &format!("{} AMI", c.name),
        );
        close(
            ari(&c.truth, &c.pred).unwrap(),
            c.ari,
            &format!("{} ARI", c.name),
        );
        close(
            cluster_accuracy(&c.truth, &c.pred).unwrap(),
            c.acc,
            &format!("{} ACC", c.name),
        );
    }
}

#[test]
fn internal_metrics_match_sklearn() {
    let f = fixture();
    for c in &f.internal {
        let s = silhouette(&c.x, c.dim, &c.labels).unwrap();
        close(s, c.silhouette, &format!("{} silhouette", c.name));
        let db = davies_bouldin(&c.x, c.dim, &c.labels).unwrap();
        close(db, c.davies_bouldin, &format!("{} Davies-Bouldin", c.name));
    }
}

#[test]
fn knn_predictions_match_the_numpy_protocol() {
    let k = fixture().knn;
    let (mut train, mut test) = (k.train.clone(), k.test.clone());
    standardize(&mut train, &mut test, k.dim).unwrap();
    let device = Device::flex();
    // a chunk smaller than the test set exercises the chunking
    let preds = knn_classify(
        &train,
        &k.train_labels,
        &test,
        k.dim,
        k.n_classes,
        &[10, 1],
        k.tau,
        &device,
        7,
    )
    .unwrap();
    assert_eq!(preds.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 10]);
    for (kk, p) in &preds {
        assert_eq!(p, &k.predictions[&kk.to_string()], "k = {kk}");
        close(
            accuracy(p, &k.test_labels),
            k.accuracy[&kk.to_string()],
            "kNN accuracy",
        );
    }
    let acc = knn_accuracy(
        &k.train,
        &k.train_labels,
        &k.test,
        &k.test_labels,
        k.dim,
        k.n_classes,
        &[1, 10],
        k.tau,
        &device,
        1000,
    )
    .unwrap();
    close(acc[1].1, k.accuracy["10"], "knn_accuracy k=10");
}

#[test]
fn logistic_regression_matches_sklearn() {
    let l = fixture().logreg;
    let (mut train, mut test) = (l.train.clone(), l.test.clone());
    preprocess(&mut train, l.dim).unwrap();
    preprocess(&mut test, l.dim).unwrap();
    let cfg = LogRegConfig {
        tol: 1e-8,
        max_iter: 10_000,
        ..LogRegConfig::new(l.lambda)
    };
    let model = fit(&train, &l.train_labels, l.dim, l.n_classes, &cfg).unwrap();
    for (i, (got, want)) in model.weights.iter().zip(&l.coef).enumerate() {
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "coef {i}: got {got}, sklearn says {want}"
        );
    }
    let pred = model.predict(&test).unwrap();
    assert_eq!(pred, l.predictions);
    close(
        accuracy(&pred, &l.test_labels),
        l.accuracy,
        "logreg accuracy",
    );
}

#[test]
fn one_hot_features_give_perfect_knn_and_nmi() {
    let n_classes = 5;
    let labels = |n: usize| {
        (0..n)
            .map(|i| (i * 7 % n_classes) as u32)
            .collect::<Vec<_>>()
    };
    let one_hot = |l: &[u32]| {
        l.iter()
            .flat_map(|&c| (0..n_classes).map(move |j| (j == c as usize) as u32 as f32))
            .collect::<Vec<f32>>()
    };
    let (ytr, yte) = (labels(100), labels(40));
    let (xtr, xte) = (one_hot(&ytr), one_hot(&yte));
    let acc = knn_accuracy(
        &xtr,
        &ytr,
        &xte,
        &yte,
        n_classes,
        n_classes,
        &[1, 10, 20],
        0.07,
        &Device::flex(),
        16,
    )
    .unwrap();
    assert_eq!(acc, vec![(1, 1.0), (10, 1.0), (20, 1.0)]);
    let km = kmeans(
        &xtr,
        n_classes,
        &KMeansConfig::new(n_classes),
        &Device::flex(),
    )
    .unwrap();
    assert!((nmi(&ytr, &km.labels).unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(cluster_accuracy(&ytr, &km.labels).unwrap(), 1.0);
}
