//! `mimr data stats|preview` on real Fashion-MNIST, and `mimr embed --images` on an image
//! folder with a corrupt file.

mod common;
use std::process::Command;

fn mimr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args(args)
        .output()
        .expect("mimr runs")
}

fn fmnist() -> String {
    common::fashion_mnist().display().to_string()
}

#[test]
fn data_stats_prints_the_manifest() {
    let o = mimr(&["data", "stats", &fmnist(), "--split", "test"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Ankle boot") && out.contains("1000"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("total") && l.ends_with("10000")),
        "{out}"
    );
}

#[test]
fn data_preview_writes_a_grid_with_every_view() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid.png");
    let o = mimr(&[
        "data",
        "preview",
        &fmnist(),
        "--global-size",
        "32",
        "--local-size",
        "16",
        "--n-local",
        "4",
        "--patch",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&out).expect("a PNG").to_rgb8();
    // one row each for the original, the globals and the locals; 4 locals of 16 px side by side
    assert!(
        img.height() >= 32 + 32 + 16 && img.width() >= 4 * 16,
        "{:?}",
        img.dimensions()
    );
    let bad = mimr(&[
        "data",
        "preview",
        &fmnist(),
        "--local-size",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("locals.size = 30"),
        "{err}"
    );
}

#[test]
fn embed_images_folder_skips_corrupt_files_and_lists_used_ones() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..3u8 {
        let img = image::RgbImage::from_fn(20, 24, |x, y| {
            image::Rgb([x as u8 * 10, y as u8 * 10, i * 80])
        });
        img.save(imgs.join(format!("img{i}.png"))).unwrap();
    }
    std::fs::write(imgs.join("broken.png"), b"not a png at all").unwrap();
    let out = dir.path().join("f.safetensors");
    let o = mimr(&[
        "embed",
        common::fixture("refined_prenorm.th").to_str().unwrap(),
        "--images",
        imgs.to_str().unwrap(),
        "--blocks",
        "last",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("skipped unreadable image") && err.contains("broken.png"),
        "{err}"
    );
    let f = mimr::checkpoint::st::read(&out).unwrap();
    assert_eq!(f.tensors["final"].shape, vec![3, 32]);
    assert_eq!(f.tensors["block.1"].shape, vec![3, 32]);
    assert_eq!(f.metadata["files"], r#"["img0.png","img1.png","img2.png"]"#);
    assert_eq!(f.metadata["skipped"], "1");
    // different images give different features
    let t = &f.tensors["final"];
    assert!(
        t.data[..32]
            .iter()
            .zip(&t.data[32..64])
            .any(|(a, b)| (a - b).abs() > 1e-3)
    );
}
