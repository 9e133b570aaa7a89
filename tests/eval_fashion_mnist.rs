//! Evaluation protocols on real data: raw-pixel kNN (§5.1) and k-means clustering (§5.4) of
//! Fashion-MNIST subsets, whose accuracies are known well enough to assert.

use burn::tensor::Device;
use mimr::data::{Dataset, Split, open};
use mimr::eval::cluster::{KMeansConfig, cluster_accuracy, kmeans, nmi};
use mimr::eval::knn::knn_accuracy;
use std::path::PathBuf;

mod common;

fn fashion_dir() -> PathBuf {
    common::fashion_mnist()
}

/// The first `n` images as 784 grey values in [0, 1] each, and their labels.
fn pixels(ds: &dyn Dataset, n: usize) -> (Vec<f32>, Vec<u32>) {
    let (mut x, mut y) = (Vec::with_capacity(n * 784), Vec::with_capacity(n));
    for i in 0..n {
        let s = ds.get(i).expect("decode a Fashion-MNIST image");
        assert_eq!(s.image.dimensions(), (28, 28));
        x.extend(s.image.pixels().map(|p| p.0[0] as f32 / 255.0));
        y.push(s.label.expect("Fashion-MNIST is labelled"));
    }
    (x, y)
}

#[test]
fn raw_pixel_knn_baseline() {
    let dir = fashion_dir();
    let (xtr, ytr) = pixels(
        open(&dir, Split::Train).expect("train split").as_ref(),
        5000,
    );
    let (xte, yte) = pixels(open(&dir, Split::Test).expect("test split").as_ref(), 1000);
    let acc = knn_accuracy(
        &xtr,
        &ytr,
        &xte,
        &yte,
        784,
        10,
        &[1, 10],
        0.07,
        &Device::flex(),
        256,
    )
    .expect("kNN");
    // numpy with the same protocol and subset: k=1 0.815, k=10 0.827
    assert_eq!(acc.len(), 2);
    assert!(
        acc[0].1 > 0.78 && acc[1].1 > 0.78,
        "raw-pixel kNN accuracy {acc:?}"
    );
}

#[test]
fn raw_pixel_kmeans_finds_the_classes_partly() {
    let dir = fashion_dir();
    let (x, y) = pixels(
        open(&dir, Split::Train).expect("train split").as_ref(),
        2000,
    );
    let cfg = KMeansConfig {
        n_init: 2,
        max_iter: 100,
        ..KMeansConfig::new(10)
    };
    let km = kmeans(&x, 784, &cfg, &Device::flex()).expect("k-means");
    let score = nmi(&y, &km.labels).expect("NMI");
    let acc = cluster_accuracy(&y, &km.labels).expect("ACC");
    // scikit-learn KMeans on the same 2000 images: NMI 0.53–0.57 over seeds
    assert!(score > 0.45, "k-means NMI {score}");
    assert!(acc > 0.4 && acc < 0.9, "k-means cluster accuracy {acc}");
}
