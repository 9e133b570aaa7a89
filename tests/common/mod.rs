//! Shared helpers of the integration tests: fixture paths and reference comparisons.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};
use mimr::checkpoint::{self, st};
use mimr::host::{HostTensor, TensorMap, host};
use mimr::model::vit::Taps;
use std::path::PathBuf;

/// The parity fixtures: (checkpoint file, --heads needed because the file does not say).
pub const FIXTURES: [(&str, Option<usize>); 4] = [
    ("mae_prenorm.pth", Some(2)),
    ("d2v2_postnorm.pt", Some(4)),
    ("timm_layerscale.safetensors", None),
    ("refined_prenorm.th", None),
];

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The reference outputs written by tools/make_fixtures.py for a checkpoint fixture.
pub fn reference(ckpt: &str) -> TensorMap {
    let stem = ckpt.split('.').next().unwrap_or(ckpt);
    st::read(&fixture(&format!("{stem}_ref.safetensors")))
        .expect("reference file")
        .tensors
}

/// Runs every block and the final output of `ckpt` on `device` for both reference inputs and
/// returns the worst max-abs difference to PyTorch, with a description of where it occurred.
pub fn parity(ckpt: &str, heads: Option<usize>, device: &Device) -> (f32, String) {
    parity_of(&fixture(ckpt), ckpt, heads, device)
}

/// [`parity`] for any checkpoint file `path` that should reproduce fixture `ckpt`'s references.
pub fn parity_of(
    path: &std::path::Path,
    ckpt: &str,
    heads: Option<usize>,
    device: &Device,
) -> (f32, String) {
    let ck = checkpoint::load(path, heads).expect("checkpoint loads");
    let model = ck.build(device).expect("model builds");
    let refs = reference(ckpt);
    let depth = ck.config.depth;
    let mut worst = (0.0f32, String::new());
    for (input, prefix) in [("images", ""), ("images_interp", "interp.")] {
        let x = &refs[input];
        let t = Tensor::<4>::from_data(TensorData::new(x.data.clone(), x.shape.clone()), device);
        let out = model.forward(
            t,
            &Taps {
                blocks: (0..depth).collect(),
                final_output: true,
            },
        );
        let mut got: Vec<(String, HostTensor)> = out
            .blocks
            .into_iter()
            .map(|(i, t)| (format!("{prefix}block.{i}"), host(t).unwrap()))
            .collect();
        got.push((
            format!("{prefix}final"),
            host(out.final_output.unwrap()).unwrap(),
        ));
        assert_eq!(got.len(), depth + 1);
        for (name, t) in got {
            let r = refs
                .get(&name)
                .unwrap_or_else(|| panic!("{ckpt}: reference lacks {name}"));
            assert_eq!(t.shape, r.shape, "{ckpt} {name}: shape");
            let d = t.max_abs_diff(r);
            if d > worst.0 || worst.1.is_empty() {
                worst = (d, format!("{ckpt} {name}"));
            }
        }
    }
    worst
}

/// Fashion-MNIST's folder; fails with the install command when it is missing.
pub fn fashion_mnist() -> PathBuf {
    let dir = mimr::data::idx::fashion_mnist_dir();
    assert!(
        dir.is_dir(),
        "Fashion-MNIST not found at {}: run `apt-get install dataset-fashion-mnist` \
         (or set MIMR_FASHION_MNIST to a folder with the IDX files)",
        dir.display()
    );
    dir
}

/// `configs/mae_fashion_mnist.toml` pointed at `dir` with a tiny MAE (width 32, 2 blocks, 2 heads,
/// decoder 32 × 2 heads), batch 32 on the CPU, no online evaluation; `sets` come last and win.
pub fn tiny_mae_config(
    dir: &std::path::Path,
    sets: &[&str],
) -> anyhow::Result<mimr::pretrain::config::PretrainConfig> {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/mae_fashion_mnist.toml");
    let mut all: Vec<String> = vec![
        format!("run.dir=\"{}\"", dir.display()),
        format!("data.train=\"{}\"", fashion_mnist().display()),
        "run.device=\"cpu\"".into(),
        "data.batch_size=32".into(),
        "model.dim=32".into(),
        "model.depth=2".into(),
        "model.heads=2".into(),
        "model.decoder_dim=32".into(),
        "model.decoder_heads=2".into(),
        "optim.warmup_epochs=0.5".into(),
        "eval.every_epochs=0".into(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    mimr::pretrain::config::PretrainConfig::load(&base, &all)
}
