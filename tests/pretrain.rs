//! `mimr pretrain` end to end on a small Fashion-MNIST subset: the run directory (header, one
//! step event per logged step, checkpoints, an importable encoder), a falling loss, resume.

mod common;
use mimr::pretrain::config::PretrainConfig;
use mimr::pretrain::run::{ENCODER_FILE, pretrain};
use mimr::runlog::{self, Event, RunKind};
use mimr::train::{Checkpoints, Control};
use std::path::Path;

/// The example config, pointed at `dir`, with a tiny model, a subset and explicit sizes.
fn config(dir: &Path, sets: &[&str]) -> anyhow::Result<PretrainConfig> {
    let mut all = vec![
        "data.workers=2",
        "data.limit=256",
        "optim.epochs=4",
        "optim.base_lr=0.01",
        "run.log_every=1",
        "run.checkpoint_every=8",
    ];
    all.extend_from_slice(sets);
    common::tiny_mae_config(dir, &all)
}

/// The losses of the `pretrain_step` events, in order, and their step numbers.
fn losses(dir: &Path) -> (Vec<u64>, Vec<f64>) {
    let r = runlog::read_all(&dir.join(runlog::FILE)).unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    match r.events.first() {
        Some(Event::Header(h)) => assert_eq!(h.kind, RunKind::Pretrain),
        other => panic!("first event is not a header: {other:?}"),
    }
    r.events
        .iter()
        .filter_map(|e| match e {
            Event::PretrainStep(s) => Some((s.step, s.loss)),
            _ => None,
        })
        .unzip()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn a_short_run_logs_every_step_checkpoints_and_exports_the_encoder() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &[]).unwrap();
    let out = pretrain(cfg.clone(), &Control::default()).unwrap();
    assert!(out.completed);
    assert_eq!(out.steps, 32); // 4 epochs × 256/32 batches
    let (steps, loss) = losses(d.path());
    assert_eq!(steps, (1..=32).collect::<Vec<u64>>());
    assert!(loss.iter().all(|l| l.is_finite()));
    let (first, last) = (mean(&loss[..5]), mean(&loss[loss.len() - 5..]));
    assert!(
        last < first,
        "loss did not fall: first 5 {first}, last 5 {last}"
    );
    let ckpts = Checkpoints::open(d.path()).unwrap().list().unwrap();
    assert!(!ckpts.is_empty(), "no checkpoint");
    let ck = mimr::checkpoint::load(&d.path().join(ENCODER_FILE), None).unwrap();
    let want = cfg.model.mae().unwrap().encoder;
    let got = &ck.config;
    assert_eq!(
        (got.patch_size, got.dim, got.depth, got.heads, got.grid),
        (want.patch_size, want.dim, want.depth, want.heads, want.grid)
    );
    ck.build(&burn::tensor::Device::flex()).unwrap();
}

#[test]
fn the_loss_falls_for_other_seeds_too() {
    for seed in [1, 2] {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), &[&format!("run.seed={seed}")]).unwrap();
        pretrain(cfg, &Control::default()).unwrap();
        let (_, loss) = losses(d.path());
        let (first, last) = (mean(&loss[..5]), mean(&loss[loss.len() - 5..]));
        assert!(last < first, "seed {seed}: first 5 {first}, last 5 {last}");
        eprintln!("seed {seed}: first 5 {first:.4}, last 5 {last:.4}");
    }
}

#[test]
fn a_resumed_run_continues_with_identical_losses() {
    let a = tempfile::tempdir().unwrap();
    pretrain(config(a.path(), &[]).unwrap(), &Control::default()).unwrap();
    let b = tempfile::tempdir().unwrap();
    let stop = config(b.path(), &["run.max_steps=13"]).unwrap();
    assert_eq!(pretrain(stop, &Control::default()).unwrap().steps, 13);
    let resumed = pretrain(config(b.path(), &[]).unwrap(), &Control::default()).unwrap();
    assert_eq!(resumed.resumed_from, Some(13));
    assert_eq!(losses(a.path()), losses(b.path()));
}

#[test]
fn invalid_values_name_their_key() {
    let d = tempfile::tempdir().unwrap();
    for (set, key) in [
        ("optim.base_lr=2.0", "optim.base_lr"),
        ("optim.weight_decay=-1", "optim.weight_decay"),
        ("run.log_every=0", "run.log_every"),
        ("model.img_size=32", "model.img_size"),
        ("data.views.n_local=2", "n_local"),
    ] {
        let err = format!("{:#}", config(d.path(), &[set]).unwrap_err());
        assert!(err.contains(key), "{set}: {err}");
    }
}

#[test]
fn a_pretrained_encoder_is_refined_by_mimr_refine() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["optim.epochs=1"]).unwrap();
    assert!(pretrain(cfg, &Control::default()).unwrap().completed);
    let export = d.path().join(ENCODER_FILE);
    let refined = d.path().join("refined");
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
    let sets = [
        format!("model.checkpoint=\"{}\"", export.display()),
        format!("run.dir=\"{}\"", refined.display()),
        format!("data.train=\"{}\"", common::fashion_mnist().display()),
        "run.device=\"cpu\"".into(),
        "data.workers=2".into(),
        "data.limit=256".into(),
        "heads.blocks=[0, 1]".into(),
        "run.max_steps=3".into(),
        "run.probe_size=32".into(),
        "run.log_every=1".into(),
    ];
    let rcfg = mimr::refine::config::RefineConfig::load(&base, &sets).unwrap();
    let out = mimr::refine::run::refine(rcfg, &Control::default()).unwrap();
    assert_eq!(out.steps, 3);
    let log = runlog::read_all(&refined.join(runlog::FILE)).unwrap();
    let steps = log
        .events
        .iter()
        .filter(|e| matches!(e, Event::Step(s) if s.heads.values().all(|h| h.loss.is_finite())))
        .count();
    assert_eq!(steps, 3, "three refinement steps with finite losses");
}

/// The `eval` events of a run: (step, encoder, heads).
fn evals(dir: &Path) -> Vec<runlog::EvalEvent> {
    let r = runlog::read_all(&dir.join(runlog::FILE)).unwrap();
    r.events
        .into_iter()
        .filter_map(|e| match e {
            Event::Eval(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn online_evaluation_scores_every_block_draws_reconstructions_and_leaves_training_as_is() {
    let (plain, watched) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    pretrain(config(plain.path(), &[]).unwrap(), &Control::default()).unwrap();
    let sets = [
        "eval.every_epochs=2",
        "eval.train_size=200",
        "eval.test_size=100",
        "eval.knn_k=[5]",
        "eval.reconstructions=4",
    ];
    let cfg = config(watched.path(), &sets).unwrap();
    pretrain(cfg, &Control::default()).unwrap();
    // evaluation reads the model and draws its own masking: the training is bit-identical
    assert_eq!(losses(plain.path()), losses(watched.path()));
    let ev = evals(watched.path());
    // at the start, after every 2 epochs of 8 steps, and at the end (= epoch 4)
    assert_eq!(ev.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 16, 32]);
    for e in &ev {
        assert_eq!(e.encoder, runlog::Encoder::Live);
        assert_eq!((e.samples.bank, e.samples.queries), (200, 100));
        let names: Vec<&str> = e.heads.keys().map(String::as_str).collect();
        assert_eq!(names, ["cls0", "cls1", "final"]);
        for (name, h) in &e.heads {
            let acc = h.knn.as_ref().and_then(|k| k["k5"]).unwrap_or(f64::NAN);
            // 10 classes (chance 0.1): a real vote over image features is far above a constant
            // or shuffled one even for a barely trained model (pixels alone give ~0.8)
            assert!(acc > 0.3 && acc <= 1.0, "{name}: kNN {acc}");
        }
        assert_eq!(e.heads["cls1"].block, Some(1));
        assert_eq!(e.heads["final"].block, None);
    }
    let recon: Vec<runlog::Reconstructions> = runlog::read_all(&watched.path().join(runlog::FILE))
        .unwrap()
        .events
        .into_iter()
        .filter_map(|e| match e {
            Event::Reconstructions(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(
        recon.iter().map(|r| r.step).collect::<Vec<_>>(),
        [0, 16, 32]
    );
    for r in &recon {
        assert_eq!(r.samples.len(), 4);
        assert_eq!(r.image, format!("reconstructions/step-{:09}.png", r.step));
        let png = watched.path().join(&r.image);
        let img = image::open(&png).unwrap().to_rgb8();
        // 4 columns and 3 rows of 28 px × 3 tiles with 2 px gaps
        assert_eq!(img.dimensions(), (4 * 86, 3 * 86), "{}", png.display());
        // the middle row shows 75 % of each image's patches masked (grey)
        let grey = (0..4 * 86)
            .flat_map(|x| (86..86 + 84).map(move |y| (x, y)))
            .filter(|&(x, y)| x % 86 < 84 && img.get_pixel(x, y).0 == [128, 128, 128])
            .count();
        let share = grey as f64 / (4.0 * 84.0 * 84.0);
        assert!((0.70..=0.80).contains(&share), "masked share {share}");
    }
}

#[test]
fn init_only_writes_the_untrained_encoder_of_the_seed() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("init.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args(["pretrain", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/mae_fashion_mnist.toml"))
        .args(["--set", "run.seed=7", "--init-only"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ck = mimr::checkpoint::load(&file, None).unwrap();
    let mae = mimr::pretrain::config::PretrainConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/mae_fashion_mnist.toml"),
        &[],
    )
    .unwrap()
    .model
    .mae()
    .unwrap();
    let want = mae.random_tensors(7).unwrap();
    for name in [
        "blocks.3.attn.qkv.weight",
        "patch_embed.proj.weight",
        "cls_tokens.tokens",
    ] {
        assert_eq!(ck.tensors[name].data, want[name].data, "{name}");
    }
    assert_ne!(
        ck.tensors["blocks.0.mlp.fc1.weight"].data,
        mae.random_tensors(8).unwrap()["blocks.0.mlp.fc1.weight"].data
    );
}
