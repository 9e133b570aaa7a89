//! `mimr inspect` / `inspect::run`: the run-like directory (events in order, one snapshot per
//! checkpoint with every block, thumbnails), features equal to an independent extraction, the
//! cache, cancellation, clear errors; and refinement snapshots with `run.snapshot_blocks = "all"`.

mod common;
use mimr::checkpoint::{self, Checkpoint, Format, st};
use mimr::inspect::{self, Cancelled, InspectProgress, InspectSpec, Phase};
use mimr::model::features;
use mimr::model::vit::{Pool, VitConfig};
use mimr::runlog::{self, Event, RunKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

/// 3 class folders × 10 PNGs of varied sizes, plus one unreadable `.png` in class `b`
/// (sample 10, the first of `b` in sorted order).
fn image_folder(root: &Path) {
    for (c, class) in ["a", "b", "c"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..10u32 {
            let (w, h) = (18 + i, 20 + 2 * (i % 3));
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let v = ((x * 7 + y * 13 + i * 29) % 97) as u8;
                image::Rgb([v, v.wrapping_mul(3), 40 + 80 * c as u8])
            });
            img.save(root.join(class).join(format!("{i:02}.png")))
                .unwrap();
        }
    }
    std::fs::write(root.join("b").join("00-broken.png"), b"not an image").unwrap();
}

/// A 3-block pre-norm ViT (patch 4, 16 px) with random weights, saved in timm names: a second
/// checkpoint of another depth than `refined_prenorm.th` (2 blocks).
fn three_block_checkpoint(dir: &Path) -> PathBuf {
    let config = VitConfig::prenorm(4, 32, 3, 2, 16);
    let ck = Checkpoint {
        format: Format::Safetensors,
        tensors: config.random_tensors(7),
        config,
        heads_source: String::new(),
        dropped: Vec::new(),
        extras: Default::default(),
    };
    let path = dir.join("three_blocks.safetensors");
    checkpoint::export_timm(&ck, &path).unwrap();
    path
}

fn spec(ckpts: Vec<PathBuf>, images: &Path, out: &Path) -> InspectSpec {
    InspectSpec {
        device: mimr::device::DeviceChoice::Cpu,
        out: Some(out.to_path_buf()),
        ..InspectSpec::new(ckpts, images.to_path_buf())
    }
}

fn run(spec: &InspectSpec) -> anyhow::Result<PathBuf> {
    inspect::run(spec, &|_| {}, &AtomicBool::new(false))
}

fn events(dir: &Path) -> Vec<Event> {
    let r = runlog::read_all(&dir.join(runlog::FILE)).unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    r.events
}

/// An independent feature path: `mimr embed`'s image loading (`images::load_folder`, skipping
/// the unreadable file) and `features::extract` at every block and the encoder output.
fn reference_features(ckpt: &Path, images: &Path, size: u32) -> Vec<(String, Vec<f32>)> {
    let dev = burn::tensor::Device::flex();
    let ck = checkpoint::load(ckpt, None).unwrap();
    let model = ck.build(&dev).unwrap();
    let files = mimr::images::list_images(images).unwrap();
    let resize = (size as f64 / 0.875).round() as u32;
    let (data, used, skipped) = mimr::images::load_folder(&files, resize, size);
    assert_eq!((used.len(), skipped.len()), (30, 1));
    let s = size as usize;
    let chunks = features::chunks_of(&data, [used.len(), 3, s, s], 7);
    let depth = ck.config.depth;
    let taps: Vec<Option<usize>> = (0..depth).map(Some).chain([None]).collect();
    let feats = features::extract(&model, chunks, &taps, Pool::Cls, &dev, |_| {}).unwrap();
    let names = (0..depth)
        .map(|b| format!("block.{b}"))
        .chain(["final".into()]);
    names.zip(feats.into_iter().map(|f| f.data)).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn two_checkpoints_give_a_run_directory_with_every_block_of_each() {
    let (data, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    image_folder(data.path());
    let first = common::fixture("refined_prenorm.th");
    let second = three_block_checkpoint(tmp.path());
    let out = tmp.path().join("inspection");
    let reports = std::cell::RefCell::new(Vec::new());
    let spec = spec(vec![first.clone(), second.clone()], data.path(), &out);
    let progress = |p: InspectProgress| reports.borrow_mut().push(p);
    let dir = inspect::run(&spec, &progress, &AtomicBool::new(false)).unwrap();
    assert_eq!(dir, out);
    let ev = events(&dir);
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| match e {
            Event::Header(_) => "header",
            Event::Thumbnails(_) => "thumbnails",
            Event::Snapshot(_) => "snapshot",
            Event::End { .. } => "end",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["header", "thumbnails", "snapshot", "snapshot", "end"]
    );
    let Event::Header(h) = &ev[0] else {
        unreachable!()
    };
    assert_eq!((h.kind, h.minor), (RunKind::Inspect, runlog::MINOR));
    assert!(h.heads.is_empty());
    let first_cfg = checkpoint::load(&first, None).unwrap().config;
    assert_eq!(h.encoder, serde_json::to_value(&first_cfg).unwrap());
    let names = h.config["checkpoints"].as_array().unwrap();
    assert_eq!(names[0]["name"], "refined_prenorm.th");
    assert_eq!(names[1]["name"], "three_blocks.safetensors");
    // thumbnails: every sample, the unreadable one marked
    let index: runlog::ThumbnailIndex =
        serde_json::from_slice(&std::fs::read(dir.join("thumbnails.json")).unwrap()).unwrap();
    assert_eq!(index.samples.len(), 31);
    assert_eq!(index.classes, ["a", "b", "c"]);
    let unreadable: Vec<usize> = index
        .samples
        .iter()
        .filter(|s| !s.readable)
        .map(|s| s.sample)
        .collect();
    assert_eq!(unreadable, [10]);
    assert!(dir.join("thumbnails.png").is_file());
    // snapshots: step i = checkpoint i, rows = the 30 readable images
    let expected_index: Vec<f32> = (0..31).filter(|&i| i != 10).map(|i| i as f32).collect();
    let expected_labels: Vec<f32> = (0..31)
        .filter(|&i| i != 10)
        .map(|i| {
            if i < 10 {
                0.0
            } else if i <= 20 {
                1.0
            } else {
                2.0
            }
        })
        .collect();
    for (step, (ckpt, depth)) in [(&first, 2), (&second, 3)].into_iter().enumerate() {
        let Event::Snapshot(s) = &ev[2 + step] else {
            unreachable!()
        };
        assert_eq!((s.step, s.samples, s.skipped), (step as u64, 30, 1));
        assert_eq!(s.file, format!("snapshots/step-{step:09}.safetensors"));
        let t = st::read(&dir.join(&s.file)).unwrap().tensors;
        let mut keys: Vec<&String> = t.keys().collect();
        keys.sort();
        let mut want: Vec<String> = (0..depth).map(|b| format!("block.{b}")).collect();
        want.extend(["final", "index", "labels"].map(String::from));
        assert_eq!(keys, want.iter().collect::<Vec<_>>());
        assert_eq!(t["index"].data, expected_index);
        assert_eq!(t["labels"].data, expected_labels);
        for (name, reference) in reference_features(ckpt, data.path(), 16) {
            assert_eq!(t[&name].shape[0], 30, "{name}");
            let d = max_diff(&t[&name].data, &reference);
            assert!(d < 1e-4, "{}: {name} differs by {d}", ckpt.display());
        }
    }
    // progress: loading, thumbnails, embedding up to every image, writing both snapshots
    let r = reports.borrow();
    let last = |ph: Phase| r.iter().rev().find(|p| p.phase == ph).copied();
    assert_eq!(
        last(Phase::Embedding).map(|p| (p.done, p.total)),
        Some((31, 31))
    );
    assert_eq!(
        last(Phase::Writing).map(|p| (p.done, p.total)),
        Some((2, 2))
    );
    assert_eq!(
        last(Phase::Loading).map(|p| (p.done, p.total)),
        Some((2, 2))
    );
    // nothing but the run files: no staging folder or lock left beside or inside it
    let beside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
    assert!(!dir.join("run.lock").exists());
}

/// Modification times of every file below `dir`.
fn mtimes(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), e.metadata().unwrap().modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_call_returns_the_cached_directory_without_rewriting_it() {
    let (data, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    image_folder(data.path());
    let out = tmp.path().join("cached");
    let mut s = spec(
        vec![common::fixture("refined_prenorm.th")],
        data.path(),
        &out,
    );
    s.limit = 12;
    run(&s).unwrap();
    let before = mtimes(&out);
    let snap = st::read(&out.join("snapshots/step-000000000.safetensors")).unwrap();
    // 12 samples spread over the 31 files (picks ⌊i·31/12⌋): the 5th is the unreadable file 10
    assert_eq!(snap.tensors["index"].data.len(), 11);
    assert!(matches!(&events(&out)[2], Event::Snapshot(e) if e.skipped == 1));
    let embedded = AtomicBool::new(false);
    let progress = |p: InspectProgress| {
        if p.phase != Phase::Loading {
            embedded.store(true, Ordering::SeqCst);
        }
    };
    let t = Instant::now();
    let again = inspect::run(&s, &progress, &AtomicBool::new(false)).unwrap();
    assert_eq!(again, out);
    assert!(t.elapsed().as_secs_f64() < 2.0, "{:?}", t.elapsed());
    assert!(!embedded.load(Ordering::SeqCst), "the cached call worked");
    assert_eq!(mtimes(&out), before);
    // other inputs at the same --out replace the stale inspection
    s.limit = 5;
    run(&s).unwrap();
    let snap = st::read(&out.join("snapshots/step-000000000.safetensors")).unwrap();
    assert_eq!(snap.tensors["index"].data.len(), 5);
}

#[test]
fn the_cache_key_follows_the_inputs() {
    let (data, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    image_folder(data.path());
    let ckpt = tmp.path().join("model.th");
    std::fs::copy(common::fixture("refined_prenorm.th"), &ckpt).unwrap();
    let s = InspectSpec::new(vec![ckpt.clone()], data.path().to_path_buf());
    let dir = inspect::cache_dir(&s);
    assert!(dir.starts_with(inspect::cache_root()), "{}", dir.display());
    assert_eq!(inspect::cache_dir(&s), dir, "not stable");
    assert_eq!(s.target(), dir);
    let changed = |f: &dyn Fn(&mut InspectSpec)| {
        let mut t = s.clone();
        f(&mut t);
        inspect::cache_dir(&t)
    };
    assert_ne!(changed(&|t| t.limit = 10), dir);
    assert_ne!(changed(&|t| t.pool = Pool::Mean), dir);
    assert_ne!(changed(&|t| t.image_size = Some(32)), dir);
    assert_ne!(changed(&|t| t.heads = vec![Some(2)]), dir);
    assert_ne!(changed(&|t| t.checkpoints.push(ckpt.clone())), dir);
    assert_eq!(
        changed(&|t| t.device = mimr::device::DeviceChoice::Cpu),
        dir
    );
    let file = std::fs::File::options().write(true).open(&ckpt).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH).unwrap();
    assert_ne!(
        inspect::cache_dir(&s),
        dir,
        "a rewritten checkpoint keeps its cache"
    );
}

#[test]
fn cancelling_leaves_no_directory_behind() {
    let (data, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    image_folder(data.path());
    let out = tmp.path().join("cancelled");
    let s = spec(
        vec![common::fixture("refined_prenorm.th")],
        data.path(),
        &out,
    );
    let cancel = AtomicBool::new(false);
    let progress = |p: InspectProgress| {
        if p.phase == Phase::Thumbnails && p.done > 0 {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let err = inspect::run(&s, &progress, &cancel).unwrap_err();
    assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // the next call does the work
    assert_eq!(run(&s).unwrap(), out);
    assert!(matches!(events(&out).last(), Some(Event::End { step: 0 })));
}

#[test]
fn bad_inputs_are_clear_errors_naming_the_path() {
    let (data, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    image_folder(data.path());
    let good = common::fixture("refined_prenorm.th");
    let out = tmp.path().join("o");
    let msg = |s: &InspectSpec| format!("{:#}", run(s).unwrap_err());
    let missing = tmp.path().join("nope.th");
    let e = msg(&spec(
        vec![good.clone(), missing.clone()],
        data.path(),
        &out,
    ));
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("does not exist"),
        "{e}"
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = msg(&spec(vec![good.clone()], &empty, &out));
    assert!(
        e.contains(&empty.display().to_string()) && e.contains("no images"),
        "{e}"
    );
    let e = msg(&spec(vec![good.clone(); 3], data.path(), &out));
    assert!(e.contains("one or two checkpoints, got 3"), "{e}");
    // an output folder holding something else is never replaced
    let foreign = tmp.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"keep").unwrap();
    let e = msg(&spec(vec![good.clone()], data.path(), &foreign));
    assert!(e.contains("not an inspection directory"), "{e}");
    assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"keep");
    // an image size the patches do not divide
    let mut s = spec(vec![good], data.path(), &out);
    s.image_size = Some(18);
    let e = msg(&s);
    assert!(
        e.contains("image size 18") && e.contains("patch size 4"),
        "{e}"
    );
    assert!(!out.exists());
    // a file without its head count needs `heads` for that checkpoint only
    let mae = common::fixture("mae_prenorm.pth");
    let mut s = spec(
        vec![common::fixture("refined_prenorm.th"), mae.clone()],
        data.path(),
        &out,
    );
    let e = msg(&s);
    assert!(
        e.contains(&mae.display().to_string()) && e.contains("heads"),
        "{e}"
    );
    s.heads = vec![None, Some(2)];
    assert_eq!(run(&s).unwrap(), out);
}

/// Refinement snapshots: `run.snapshot_blocks = "all"` adds `block.<i>` for every block (block 0
/// equal to head `cls0`, the same tap and pooling); the default writes the head tensors only.
#[test]
fn refinement_snapshots_hold_every_block_with_snapshot_blocks_all() {
    let data = tempfile::tempdir().unwrap();
    image_folder(data.path());
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
    let keys = |dir: &Path, extra: &[&str]| {
        let mut sets: Vec<String> = [
            "run.device=\"cpu\"",
            "data.workers=2",
            "data.batch_size=16",
            "stage2.epochs=1",
            "stage3.epochs=1",
            "heads.queue_size=32",
            "run.probe_size=12",
            "eval.every_epochs=0",
        ]
        .map(String::from)
        .to_vec();
        sets.push(format!("run.dir=\"{}\"", dir.display()));
        sets.push(format!("data.train=\"{}\"", data.path().display()));
        sets.extend(extra.iter().map(|s| s.to_string()));
        let cfg = mimr::refine::config::RefineConfig::load(&base, &sets).unwrap();
        mimr::refine::run::refine(cfg, &mimr::train::Control::default()).unwrap();
        let last = events(dir)
            .into_iter()
            .rev()
            .filter_map(|e| match e {
                Event::Snapshot(s) => Some(s),
                _ => None,
            })
            .next()
            .unwrap();
        assert_eq!((last.samples, last.skipped), (11, 1));
        st::read(&dir.join(&last.file)).unwrap().tensors
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let all = keys(a.path(), &["run.snapshot_blocks=\"all\""]);
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["block.0", "block.1", "cls0", "index", "labels", "main"]
    );
    assert_eq!(all["block.0"].data, all["cls0"].data);
    assert_eq!(all["block.1"].shape, vec![11, 32]);
    let heads = keys(b.path(), &[]);
    let mut names: Vec<&String> = heads.keys().collect();
    names.sort();
    assert_eq!(names, ["cls0", "index", "labels", "main"]);
    // a bad value names the key
    let err =
        mimr::refine::config::RefineConfig::load(&base, &["run.snapshot_blocks=\"some\"".into()])
            .unwrap_err();
    let e = format!("{err:#}");
    assert!(e.contains("snapshot_blocks") && e.contains("heads"), "{e}");
}

/// `mimr inspect A,B --images DIR --out X`: prints the directory, a second call the same one;
/// a missing image folder fails with its path.
#[test]
fn the_cli_prints_the_directory_and_reuses_it() {
    let (data, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    image_folder(data.path());
    let out = tmp.path().join("cli");
    let ckpts = format!(
        "{},{}",
        common::fixture("refined_prenorm.th").display(),
        common::fixture("timm_layerscale.safetensors").display()
    );
    let mimr = |images: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mimr"))
            .args(["inspect", &ckpts, "--device", "cpu", "--limit", "20"])
            .arg("--images")
            .arg(images)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let o = mimr(data.path());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            out.display().to_string()
        );
    }
    let snaps: Vec<usize> = events(&out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(s.samples),
            _ => None,
        })
        .collect();
    assert_eq!(snaps, [19, 19]);
    // the second checkpoint (patch 8, 48 wide) is embedded at the first one's 16 px
    let t = st::read(&out.join("snapshots/step-000000001.safetensors"))
        .unwrap()
        .tensors;
    assert_eq!(t["final"].shape, vec![19, 48]);
    let missing = tmp.path().join("no-images");
    let o = mimr(&missing);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
}
