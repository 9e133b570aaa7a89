//! The bundled demo: the assets load as documented (assets/README.md), and `mimr demo
//! --headless` refines with configs/demo.toml and prints its per-block kNN table.

use mimr::data::{self, Split};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_bundled_model_and_data_load_as_documented() {
    let ck = mimr::checkpoint::load(&repo("assets/demo_mae.safetensors"), None).unwrap();
    let c = &ck.config;
    assert_eq!(
        (c.patch_size, c.dim, c.depth, c.heads, c.grid),
        (4, 64, 8, 4, [7, 7])
    );
    for (split, per_class) in [(Split::Train, 600), (Split::Test, 100)] {
        let ds = data::open(&repo("assets/fashion-mnist"), split).unwrap();
        assert_eq!(ds.len(), 10 * per_class, "{split}");
        let mut counts = [0usize; 10];
        for i in 0..ds.len() {
            let s = ds.get(i).unwrap();
            assert_eq!(s.image.dimensions(), (28, 28));
            counts[s.label.unwrap() as usize] += 1;
        }
        assert_eq!(counts, [per_class; 10], "{split}");
    }
}

#[test]
fn the_headless_demo_refines_and_prints_the_per_block_table() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args(["demo", "--headless"])
        .args(["--set", &format!("run.dir=\"{}\"", d.path().display())])
        .args(["--set", "run.device=\"cpu\"", "--set", "run.max_steps=4"])
        .args([
            "--set",
            "eval.train_size=300",
            "--set",
            "eval.test_size=100",
        ])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| block | MAE | refined (EMA) | change |"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('%'))
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r.split('|').nth(1).unwrap().trim())
        .collect();
    assert_eq!(
        names,
        [
            "0",
            "1",
            "2",
            "3",
            "4",
            "5 (head)",
            "6 (head)",
            "7",
            "final (head)"
        ]
    );
    // 4 steps are all in stage 2, which trains the heads only: the EMA encoder is the MAE's
    for r in &rows {
        assert!(r.trim_end().ends_with("| +0.0 |"), "{r}");
    }
    let saved = std::fs::read_to_string(d.path().join("demo_knn.md")).unwrap();
    assert!(saved.contains("| final (head) |"));
}

/// pretrain → export → timm: timm's VisionTransformer loaded the bundled encoder (strict) and
/// embedded 16 test images (tools/make_demo_timm_fixture.py); `mimr embed` must agree.
#[test]
fn mimr_embed_of_the_bundled_model_matches_timm() {
    let d = tempfile::tempdir().unwrap();
    let fixture = repo("tests/fixtures/demo_timm_features.safetensors");
    let feats = d.path().join("feats.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_mimr"))
        .arg("embed")
        .arg(repo("assets/demo_mae.safetensors"))
        .arg("--input-tensor")
        .arg(&fixture)
        .args([
            "--blocks", "all", "--pool", "cls", "--device", "cpu", "--out",
        ])
        .arg(&feats)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = mimr::checkpoint::st::read(&fixture).unwrap().tensors;
    let got = mimr::checkpoint::st::read(&feats).unwrap().tensors;
    let names: Vec<String> = (0..8)
        .map(|i| format!("block.{i}"))
        .chain(["final".into()])
        .collect();
    for name in &names {
        let (w, g) = (&want[name], &got[name]);
        assert_eq!(w.shape, g.shape, "{name}");
        let scale = w.data.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = w
            .data
            .iter()
            .zip(&g.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-4 * scale,
            "{name}: max |timm − mimr| = {err} (scale {scale})"
        );
    }
}
