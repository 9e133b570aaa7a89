//! The data pipeline on real data: Fashion-MNIST from Debian's `dataset-fashion-mnist` (or the
//! folder in `MIMR_FASHION_MNIST`), its manifest, and multi-crop batches from the loader.

use mimr::data::{IMAGENET_MEAN, IMAGENET_STD, Loader, Manifest, MultiCropConfig, Split, open};
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
        for (group, size) in b.globals.iter().map(|g| (g, 32)).chain([(&b.locals, 16)]) {
            // normalised with the ImageNet statistics: undone, every value is a pixel in [0, 1]
            // (unnormalised views would not hold the dark values below; views normalised twice
            // or with swapped statistics would leave [0, 1])
            for (i, &v) in group.iter().enumerate() {
                let c = (i / (size * size)) % 3;
                let pixel = v * IMAGENET_STD[c] + IMAGENET_MEAN[c];
                assert!((-1e-5..=1.0 + 1e-5).contains(&pixel), "{v} in channel {c}");
            }
            // Fashion-MNIST's black backgrounds normalise to ≈ −2 (−mean/std), even after jitter
            let min = group.iter().copied().fold(f32::INFINITY, f32::min);
            assert!(min < -1.0, "no dark pixel in a batch: min {min}");
            assert!(
                group.iter().any(|&v| v != group[0]),
                "a batch of constant views"
            );
        }
    }
    assert_ne!(batches[0].indices, batches[1].indices);
}
