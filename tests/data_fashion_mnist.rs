//! The data pipeline on real data: Fashion-MNIST from Debian's `dataset-fashion-mnist` (or the
//! folder in `MIMR_FASHION_MNIST`), its manifest, and multi-crop batches from the loader.

use mimr::data::{Loader, Manifest, MultiCropConfig, Split, open};
use std::path::PathBuf;
use std::sync::Arc;

mod common;

fn fashion_dir() -> PathBuf {
    common::fashion_mnist()
}

#[test]
fn manifest_has_the_published_counts() {
    let dir = fashion_dir();
    for (split, n) in [(Split::Train, 60_000usize), (Split::Test, 10_000)] {
        let ds = open(&dir, split).expect("open Fashion-MNIST");
        let m = Manifest::compute(ds.as_ref(), true).expect("manifest");
        assert_eq!(
            (m.samples, m.unlabelled, m.corrupt.len()),
            (n, 0, 0),
            "{split}"
        );
        assert_eq!(m.per_class.len(), 10);
        assert_eq!(m.per_class[0].0, "T-shirt/top");
        assert!(m.per_class.iter().all(|(_, c)| *c == n / 10), "{m}");
    }
}

#[test]
fn loader_yields_normalised_multi_crop_batches() {
    let ds: Arc<dyn mimr::data::Dataset> =
        Arc::from(open(&fashion_dir(), Split::Train).expect("open"));
    let cfg = MultiCropConfig::for_image_size(32, 16, 10);
    cfg.validate(4).expect("32/16 px views fit patch 4");
    let loader = Loader::new(ds, cfg, 16, 0, 2, 2).expect("loader");
    let batches: Vec<_> = loader.epoch(0).take(2).map(|b| b.expect("batch")).collect();
    assert_eq!(batches.len(), 2);
    for b in &batches {
        assert_eq!((b.len(), b.labels.len(), b.skipped), (16, 16, 0));
        assert!(b.labels.iter().all(|l| (0..10).contains(l)));
        assert_eq!((b.global_size, b.local_size, b.globals.len()), (32, 16, 2));
        assert!(b.globals.iter().all(|g| g.len() == 16 * 3 * 32 * 32));
        assert_eq!(b.locals.len(), 10 * 16 * 3 * 16 * 16);
        for group in b.globals.iter().chain([&b.locals]) {
            assert!(group.iter().all(|v| v.is_finite() && v.abs() < 3.0));
            let mean = group.iter().map(|&v| v as f64).sum::<f64>() / group.len() as f64;
            assert!((-3.0..=3.0).contains(&mean), "mean {mean}");
            assert!(
                group.iter().any(|&v| v != group[0]),
                "a batch of constant views"
            );
        }
    }
    assert_ne!(batches[0].indices, batches[1].indices);
}
