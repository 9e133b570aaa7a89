//! The stable command-line interface (`info`, `embed`, `export`) on every fixture format, and
//! the error messages for corrupted or mismatched inputs.

mod common;
use common::{FIXTURES, fixture, reference};
use mimr::checkpoint::st;
use mimr::host::{HostTensor, TensorMap};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

fn mimr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args(args)
        .output()
        .expect("mimr runs")
}

fn ok(args: &[&str]) -> String {
    let o = mimr(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "mimr {args:?} failed: {err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let o = mimr(args);
    assert!(!o.status.success(), "mimr {args:?} should fail");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "mimr {args:?} panicked: {err}");
    err
}

fn heads_args(h: Option<usize>) -> Vec<String> {
    h.map(|h| vec!["--heads".to_string(), h.to_string()])
        .unwrap_or_default()
}

#[test]
fn info_reports_every_format_and_architecture() {
    let expect = [
        ("mae_prenorm.pth", "mae-pth", 3, "pre-norm", 32),
        ("d2v2_postnorm.pt", "data2vec2", 3, "post-norm", 32),
        (
            "timm_layerscale.safetensors",
            "safetensors",
            2,
            "pre-norm",
            48,
        ),
        ("refined_prenorm.th", "refiner-th", 2, "pre-norm", 32),
    ];
    for ((ckpt, heads), (_, format, depth, style, dim)) in FIXTURES.iter().zip(expect) {
        let path = fixture(ckpt);
        let mut args = vec![
            "info".to_string(),
            path.display().to_string(),
            "--json".into(),
        ];
        args.extend(heads_args(*heads));
        let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["format"], format, "{ckpt}");
        assert_eq!(v["architecture"]["depth"], depth, "{ckpt}");
        assert_eq!(v["architecture"]["dim"], dim, "{ckpt}");
        assert_eq!(v["architecture"]["block_style"], style, "{ckpt}");
        let text = ok(&args[..2]
            .iter()
            .map(String::as_str)
            .chain(heads_args(*heads).iter().map(String::as_str))
            .collect::<Vec<_>>());
        assert!(text.contains("parameters:"), "{text}");
    }
}

#[test]
fn info_counts_parameters_like_pytorch() {
    // timm fixture: patch 8, dim 48, depth 2, LayerScale; PyTorch's count without pos_embed.
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "info",
        fixture("timm_layerscale.safetensors").to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    let t = st::read(&fixture("timm_layerscale.safetensors"))
        .unwrap()
        .tensors;
    let torch_count: usize = t
        .iter()
        .filter(|(k, _)| *k != "pos_embed")
        .map(|(_, x)| x.numel())
        .sum();
    assert_eq!(v["parameters"], torch_count);
    assert_eq!(v["architecture"]["layer_scale"], true);
}

#[test]
fn embed_writes_pooled_block_features_matching_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    for (ckpt, heads) in FIXTURES {
        let stem = ckpt.split('.').next().unwrap();
        let refs = reference(ckpt);
        let input = dir.path().join(format!("{stem}_in.safetensors"));
        let images = TensorMap::from([("images".to_string(), refs["images"].clone())]);
        st::write(&input, &images, HashMap::new()).unwrap();
        let out = dir.path().join(format!("{stem}_feats.safetensors"));
        let mut args: Vec<String> = [
            "embed",
            fixture(ckpt).to_str().unwrap(),
            "--input-tensor",
            input.to_str().unwrap(),
            "--blocks",
            "0,1",
            "--pool",
            "cls",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(heads_args(heads));
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let feats = st::read(&out).unwrap().tensors;
        let mut names: Vec<&String> = feats.keys().collect();
        names.sort();
        assert_eq!(names, vec!["block.0", "block.1", "final"], "{ckpt}");
        for name in ["block.0", "block.1", "final"] {
            let r = &refs[name];
            let (b, n, d) = (r.shape[0], r.shape[1], r.shape[2]);
            let cls: Vec<f32> = (0..b)
                .flat_map(|i| r.data[i * n * d..i * n * d + d].to_vec())
                .collect();
            let want = HostTensor::new(vec![b, d], cls).unwrap();
            let diff = feats[name].max_abs_diff(&want);
            assert!(diff <= 1e-4, "{ckpt} {name}: {diff}");
        }
    }
}

#[test]
fn embed_mean_pooling_and_no_final_norm() {
    let dir = tempfile::tempdir().unwrap();
    let refs = reference("refined_prenorm.th");
    let input = dir.path().join("in.safetensors");
    st::write(
        &input,
        &TensorMap::from([("images".to_string(), refs["images"].clone())]),
        HashMap::new(),
    )
    .unwrap();
    let out = dir.path().join("f.safetensors");
    ok(&[
        "embed",
        fixture("refined_prenorm.th").to_str().unwrap(),
        "--input-tensor",
        input.to_str().unwrap(),
        "--blocks",
        "last",
        "--pool",
        "mean",
        "--no-final-norm",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let feats = st::read(&out).unwrap().tensors;
    let r = &refs["block.1"];
    let (b, n, d) = (r.shape[0], r.shape[1], r.shape[2]);
    let mean: Vec<f32> = (0..b)
        .flat_map(|i| {
            (0..d).map(move |k| {
                (1..n).map(|t| r.data[(i * n + t) * d + k]).sum::<f32>() / (n - 1) as f32
            })
        })
        .collect();
    let want = HostTensor::new(vec![b, d], mean).unwrap();
    assert!(feats["final"].max_abs_diff(&want) <= 1e-4);
    assert!(feats["block.1"].max_abs_diff(&want) <= 1e-4);
}

#[test]
fn export_round_trips_through_timm_names() {
    let dir = tempfile::tempdir().unwrap();
    for (ckpt, heads) in FIXTURES {
        let out = dir
            .path()
            .join(format!("{}.safetensors", ckpt.replace('.', "_")));
        let mut args: Vec<String> = vec![
            "export".into(),
            fixture(ckpt).display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(heads_args(heads));
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let f = st::read(&out).unwrap();
        assert!(
            f.tensors.contains_key("cls_token") && f.tensors.contains_key("pos_embed"),
            "{ckpt}: timm names"
        );
        assert_eq!(
            f.tensors["pos_embed"].data[..4],
            [0.0; 4],
            "{ckpt}: zero CLS position row"
        );
        // The exported file is itself a checkpoint that reproduces PyTorch (no --heads needed).
        let (worst, at) = common::parity_of(&out, ckpt, None, &burn::tensor::Device::flex());
        assert!(
            worst <= 1e-4,
            "exported {ckpt}: max abs diff {worst} at {at}"
        );
    }
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn corrupt_and_mismatched_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pth = std::fs::read(fixture("mae_prenorm.pth")).unwrap();

    let truncated = write_bytes(dir.path(), "truncated.pth", &pth[..pth.len() / 2]);
    let e = fails(&["info", &truncated, "--heads", "2"]);
    assert!(
        e.contains("truncated.pth") && e.contains("truncated or corrupt"),
        "{e}"
    );

    let mut rng = mimr::rng::Rng::new(7);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    let random = write_bytes(dir.path(), "random.bin", &noise);
    let e = fails(&["info", &random]);
    assert!(
        e.contains("random.bin") && e.contains("unrecognised checkpoint format"),
        "{e}"
    );

    let e = fails(&[
        "info",
        fixture("evil_global.pth").to_str().unwrap(),
        "--heads",
        "2",
    ]);
    assert!(
        e.contains("__main__.Evil") && e.contains("norm.weight"),
        "{e}"
    );

    let e = fails(&["info", fixture("mae_prenorm.pth").to_str().unwrap()]);
    assert!(e.contains("--heads"), "{e}");

    let mut t = st::read(&fixture("timm_layerscale.safetensors"))
        .unwrap()
        .tensors;
    t.insert(
        "blocks.1.attn.qkv.weight".into(),
        HostTensor::new(vec![10, 48], vec![0.0; 480]).unwrap(),
    );
    t.remove("blocks.0.mlp.fc2.bias");
    t.insert(
        "blocks.0.extra.weight".into(),
        HostTensor::new(vec![2], vec![0.0; 2]).unwrap(),
    );
    let bad = dir.path().join("bad.safetensors");
    st::write(
        &bad,
        &t,
        HashMap::from([("num_heads".to_string(), "3".to_string())]),
    )
    .unwrap();
    let e = fails(&["info", bad.to_str().unwrap()]);
    assert!(
        e.contains("blocks.1.attn.qkv.weight: expected [144, 48], found [10, 48]"),
        "{e}"
    );
    assert!(
        e.contains("missing    blocks.0.mlp.fc2.bias: expected shape [48]"),
        "{e}"
    );
    assert!(e.contains("unexpected blocks.0.extra.weight"), "{e}");

    let e = fails(&["info", "/nonexistent/model.pth"]);
    assert!(e.contains("/nonexistent/model.pth"), "{e}");
}

#[test]
fn embed_rejects_images_not_divisible_by_patch() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("odd.safetensors");
    let x = HostTensor::new(vec![1, 3, 18, 16], vec![0.0; 3 * 18 * 16]).unwrap();
    st::write(
        &input,
        &TensorMap::from([("images".to_string(), x)]),
        HashMap::new(),
    )
    .unwrap();
    let e = fails(&[
        "embed",
        fixture("refined_prenorm.th").to_str().unwrap(),
        "--input-tensor",
        input.to_str().unwrap(),
        "--device",
        "cpu",
        "--out",
        dir.path().join("o.safetensors").to_str().unwrap(),
    ]);
    assert!(e.contains("not a multiple of the patch size 4"), "{e}");
}
