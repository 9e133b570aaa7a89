//! The NN pairs' images (`nn_examples/step-<n>.png` + `.json`): a real refinement writes them for
//! its logged pairs, each tile is the dataset image's thumbnail, old ones are pruned, and the
//! map's worker decodes them (or says why not).

mod common;
use image::RgbImage;
use mimr::data::augment::{CropBox, resize_bicubic};
use mimr::data::subset::Subset;
use mimr::data::{Dataset, Split};
use mimr::refine::config::RefineConfig;
use mimr::refine::nn_thumbs::{self, KEEP};
use mimr::runlog::{self, Event, NnExamples, NnPair, ThumbnailIndex};
use mimr::train::Control;
use mimr::view::embedding::{MapWorker, PairAtlas, Request};
use mimr::view::files::{DirFiles, RunFiles};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROBE: usize = 64;
const LIMIT: usize = 192;

/// A tiny CPU refinement of the debug ViT on [`LIMIT`] Fashion-MNIST images, every step logged.
fn refine(dir: &Path) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
    let sets = [
        format!("run.dir=\"{}\"", dir.display()),
        format!("data.train=\"{}\"", common::fashion_mnist().display()),
        "run.device=\"cpu\"".into(),
        "data.workers=2".into(),
        format!("data.limit={LIMIT}"),
        "data.batch_size=32".into(),
        "stage2.epochs=1".into(),
        "stage3.epochs=1".into(),
        "heads.queue_size=64".into(),
        "run.log_every=1".into(),
        "run.snapshot_every=0".into(),
        format!("run.probe_size={PROBE}"),
        "eval.every_epochs=0".into(),
    ];
    let cfg = RefineConfig::load(&base, &sets).expect("config loads");
    mimr::refine::run::refine(cfg, &Control::default()).expect("refine runs");
}

fn fashion_mnist() -> Box<dyn Dataset> {
    mimr::data::open(&common::fashion_mnist(), Split::Train).unwrap()
}

/// The nn_examples events of a run, in log order.
fn nn_events(dir: &Path) -> Vec<NnExamples> {
    let r = runlog::read_all(&dir.join(runlog::FILE)).unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    let events = r.events.into_iter().filter_map(|e| match e {
        Event::NnExamples(n) => Some(n),
        _ => None,
    });
    events.collect()
}

/// Anchors and neighbours of `ex`, each once, in order of first appearance (heads by name).
fn distinct(ex: &NnExamples) -> Vec<usize> {
    let mut out = Vec::new();
    for pairs in ex.heads.values() {
        for p in pairs {
            for s in [p.sample as i64, p.neighbour] {
                if s >= 0 && !out.contains(&(s as usize)) {
                    out.push(s as usize);
                }
            }
        }
    }
    out
}

fn read_index(dir: &Path, rel: &str) -> ThumbnailIndex {
    serde_json::from_slice(&std::fs::read(dir.join(rel)).unwrap()).unwrap()
}

/// Tile `i` of an atlas laid out as `index` says.
fn tile(atlas: &RgbImage, index: &ThumbnailIndex, i: usize) -> RgbImage {
    let (t, c) = (index.tile, index.columns);
    let (x, y) = ((i as u32 % c) * t, (i as u32 / c) * t);
    image::imageops::crop_imm(atlas, x, y, t, t).to_image()
}

/// The thumbnail of `img`: its centre square resized to `side` (PIL bicubic).
fn expected_tile(img: &RgbImage, side: u32) -> RgbImage {
    let s = img.width().min(img.height());
    let crop = CropBox {
        top: (img.height() - s) / 2,
        left: (img.width() - s) / 2,
        height: s,
        width: s,
    };
    resize_bicubic(img, crop, side, side)
}

/// The PNG files in `dir/nn_examples`, sorted.
fn pngs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(nn_thumbs::FOLDER))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".png"))
        .map(|n| format!("{}/{n}", nn_thumbs::FOLDER))
        .collect();
    names.sort();
    names
}

/// Waits for the worker's answer to a `PairThumbnails` request.
fn pair_answer(worker: &MapWorker) -> PairAtlas {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(a) = worker.pair_thumbnails() {
            return a;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the worker did not answer within 30 s");
}

#[test]
fn a_refinement_writes_each_logged_pairs_images_as_their_thumbnails() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    refine(dir);
    let events = nn_events(dir);
    assert_eq!(events.len(), 12, "every step logged");
    let written: Vec<&NnExamples> = events.iter().filter(|e| e.thumbnails.is_some()).collect();
    assert!(
        events[0].thumbnails.is_some(),
        "the first logged step always gets its images"
    );
    // only the newest KEEP atlases stay, and they are the newest ones the log names
    let named: Vec<String> = written
        .iter()
        .filter_map(|e| e.thumbnails.clone())
        .collect();
    let newest = &named[named.len().saturating_sub(KEEP)..];
    assert_eq!(pngs(dir), newest.to_vec(), "pruned to the newest {KEEP}");

    // the run's dataset: `data.limit` samples strided over the training set
    let ds = Subset::new(Arc::from(fashion_mnist()), LIMIT);
    let probe_png = image::open(dir.join("thumbnails.png")).unwrap().to_rgb8();
    let probe = read_index(dir, "thumbnails.json");
    let (mut inside, mut outside) = (0, 0);
    for ex in written.iter().rev().take(KEEP) {
        let image = ex.thumbnails.as_deref().unwrap();
        assert_eq!(image, format!("nn_examples/step-{:09}.png", ex.step));
        let index = read_index(dir, &ex.thumbnail_index().unwrap());
        let listed: Vec<usize> = index.samples.iter().map(|e| e.sample).collect();
        assert_eq!(
            listed,
            distinct(ex),
            "step {}: the event's samples, once each",
            ex.step
        );
        let atlas = image::open(dir.join(image)).unwrap().to_rgb8();
        assert_eq!(index.tile, 28, "Fashion-MNIST's own size");
        assert_eq!(index.classes, ds.classes());
        for (i, e) in index.samples.iter().enumerate() {
            let sample = ds.get(e.sample).unwrap();
            assert!(e.readable);
            assert_eq!(e.label, sample.label, "sample {}", e.sample);
            let got = tile(&atlas, &index, i);
            let want = expected_tile(&sample.image, index.tile);
            assert!(got == want, "step {} tile {i} (#{})", ex.step, e.sample);
            if e.sample < PROBE {
                inside += 1;
                let p = tile(&probe_png, &probe, e.sample);
                assert!(got == p, "#{}: as in thumbnails.png", e.sample);
            } else {
                outside += 1;
            }
        }
    }
    assert!(
        inside > 0 && outside > 0,
        "{inside} in the probe, {outside} outside"
    );

    // the map's worker decodes the newest pair atlas: a tile for every sample of the event
    let files: Arc<dyn RunFiles> = Arc::new(DirFiles::new(dir));
    let worker = MapWorker::spawn(files, || {}).unwrap();
    let ex = (*written.last().unwrap()).clone();
    worker.send(Request::PairThumbnails(ex.clone()));
    let answer = pair_answer(&worker);
    assert_eq!(answer.examples, ex);
    let atlas = answer.atlas.expect("decodes");
    for s in distinct(&ex) {
        assert!(atlas.tile(s).is_some(), "#{s} has a tile");
    }
}

/// An event of one head whose pairs are `(sample, neighbour)`.
fn event(step: u64, pairs: &[(usize, i64)]) -> NnExamples {
    let pairs = pairs.iter().map(|&(sample, neighbour)| NnPair {
        sample,
        neighbour,
        same_label: None,
    });
    NnExamples {
        step,
        heads: BTreeMap::from([("main".to_string(), pairs.collect())]),
        thumbnails: None,
    }
}

fn steps_on_disk(dir: &Path) -> BTreeSet<String> {
    let all = std::fs::read_dir(dir.join(nn_thumbs::FOLDER)).unwrap();
    all.map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn old_atlases_are_pruned_and_those_after_a_resume_point_removed() {
    let dir = tempfile::tempdir().unwrap();
    let ds = fashion_mnist();
    let names = |steps: &[u64]| -> BTreeSet<String> {
        let files = steps
            .iter()
            .flat_map(|s| [format!("step-{s:09}.png"), format!("step-{s:09}.json")]);
        files.collect()
    };
    for step in [10, 20, 30, 40, 50] {
        let ex = event(step, &[(step as usize, 1), (2, -1)]);
        let image = nn_thumbs::write(dir.path(), ds.as_ref(), &ex).unwrap();
        assert_eq!(image, nn_thumbs::image_file(step));
    }
    assert_eq!(steps_on_disk(dir.path()), names(&[30, 40, 50]));
    // a run resumed from step 30 writes step 35: the atlases of the abandoned steps 40, 50 go
    nn_thumbs::write(dir.path(), ds.as_ref(), &event(35, &[(3, 4)])).unwrap();
    assert_eq!(steps_on_disk(dir.path()), names(&[30, 35]));
}

#[test]
fn unreadable_samples_get_grey_tiles_and_a_broken_atlas_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let ds = fashion_mnist();
    let past_end = ds.len() + 5;
    let mut ex = event(7, &[(0, past_end as i64), (1, 0)]);
    ex.thumbnails = Some(nn_thumbs::write(dir.path(), ds.as_ref(), &ex).unwrap());
    let index = read_index(dir.path(), &ex.thumbnail_index().unwrap());
    let readable: Vec<(usize, bool)> = index
        .samples
        .iter()
        .map(|e| (e.sample, e.readable))
        .collect();
    assert_eq!(readable, vec![(0, true), (past_end, false), (1, true)]);

    let files: Arc<dyn RunFiles> = Arc::new(DirFiles::new(dir.path()));
    let worker = MapWorker::spawn(files, || {}).unwrap();
    worker.send(Request::PairThumbnails(ex.clone()));
    let atlas = pair_answer(&worker).atlas.expect("decodes");
    assert!(atlas.tile(0).is_some() && atlas.tile(1).is_some());
    assert!(
        atlas.tile(past_end).is_none(),
        "an unreadable sample has no tile"
    );

    let png = dir.path().join(ex.thumbnails.as_deref().unwrap());
    std::fs::write(&png, b"not a png").unwrap();
    worker.send(Request::PairThumbnails(ex.clone()));
    let Err(err) = pair_answer(&worker).atlas else {
        panic!("a corrupt PNG is an error")
    };
    assert!(err.contains("step-000000007.png"), "{err}");
    std::fs::remove_file(&png).unwrap();
    worker.send(Request::PairThumbnails(ex.clone()));
    assert!(
        pair_answer(&worker).atlas.is_err(),
        "a missing PNG is an error"
    );
    worker.send(Request::PairThumbnails(event(8, &[(0, 1)])));
    let Err(err) = pair_answer(&worker).atlas else {
        panic!("no images were written: an error")
    };
    assert!(err.contains("step 8"), "{err}");
}

#[test]
fn a_log_of_an_earlier_build_without_pair_images_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(runlog::FILE);
    let lines = [
        r#"{"type":"header","version":1,"minor":2,"kind":"refine","heads":["main"]}"#,
        r#"{"type":"nn_examples","step":10,"heads":{"main":[{"sample":3,"neighbour":-1,"same_label":null}]}}"#,
    ];
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let r = runlog::read_all(&log).unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    let Some(Event::NnExamples(ex)) = r.events.get(1) else {
        panic!("{:?}", r.events)
    };
    assert_eq!((ex.step, ex.thumbnails.as_ref()), (10, None));
    assert_eq!(ex.samples(), vec![3]);
}
