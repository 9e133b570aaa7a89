//! `mimr eval` on Fashion-MNIST: every protocol reports per block, the reports and the kNN
//! curve are written, and a second run reads the feature cache.

mod common;
use std::process::Command;

#[test]
fn eval_writes_per_block_reports_and_reuses_its_feature_cache() {
    let data_dir = common::fashion_mnist();
    let data = data_dir.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let ckpt = common::fixture("refined_prenorm.th");
    let args = [
        "eval",
        ckpt.to_str().unwrap(),
        "--data",
        data,
        "--protocols",
        "knn,probe,lowshot,cluster",
        "--train-limit",
        "600",
        "--test-limit",
        "200",
        "--probe-epochs",
        "5",
        "--device",
        "cpu",
        "--out",
        out.path().to_str().unwrap(),
    ];
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_mimr"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    for b in blocks {
        let k10 = b["knn"]["k10"].as_f64().unwrap();
        assert!(
            k10 > 0.3 && k10 <= 1.0,
            "kNN of a random ViT on Fashion-MNIST is well above chance: {k10}"
        );
        assert!(b["probe"]["best_accuracy"].as_f64().unwrap() > 0.2);
        assert!(b["lowshot"]["5shot"].as_f64().unwrap() > 0.1);
        assert!(b["cluster"]["nmi"].as_f64().unwrap() > 0.05);
    }
    assert!(image::open(out.path().join("knn_per_block.png")).is_ok());
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.contains("| block |") && md.contains("knn k10"));
    let caches = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("features-")
            })
            .count()
    };
    assert_eq!(caches(out.path()), 2);
    let again = run();
    assert!(again.status.success());
    let v2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(
        v["blocks"][0]["knn"], v2["blocks"][0]["knn"],
        "cached features give the same kNN"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args([
            "eval",
            common::fixture("refined_prenorm.th").to_str().unwrap(),
            "--data",
            data,
            "--protocols",
            "knn,foo",
            "--out",
            out.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--protocols") && err.contains("unknown protocol `foo`"),
        "{err}"
    );
    let out2 = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args([
            "eval",
            ckpt.to_str().unwrap(),
            "--data",
            data,
            "--pool",
            "cls-mean",
            "--final-norm",
            "--train-limit",
            "300",
            "--test-limit",
            "100",
            "--device",
            "cpu",
            "--out",
            out2.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.path().join("results.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["block"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["0", "1", "final"]);
}

/// A labelled image folder without train/test parts, built so that self-matching is visible:
/// class `a` holds 30 random images, class `b` a near-copy of each (one pixel changed), and `a`
/// one corrupt file. Held out properly, a query's nearest other image is its twin of the other
/// class whenever the twin is in the bank; matched against itself, 1-NN would be exactly 1.0.
#[test]
fn eval_holds_out_a_stratified_test_part_and_skips_unreadable_images() {
    let data = tempfile::tempdir().unwrap();
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as u8
    };
    for class in ["a", "b"] {
        std::fs::create_dir_all(data.path().join(class)).unwrap();
    }
    for i in 0..30 {
        let mut img = image::RgbImage::from_fn(32, 32, |_, _| image::Rgb([next(), next(), next()]));
        img.save(data.path().join("a").join(format!("{i:02}.png")))
            .unwrap();
        img.get_pixel_mut(5, 5).0[0] ^= 1;
        img.save(data.path().join("b").join(format!("{i:02}.png")))
            .unwrap();
    }
    std::fs::write(data.path().join("a").join("zz_broken.png"), b"not a png").unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args([
            "eval",
            common::fixture("refined_prenorm.th").to_str().unwrap(),
        ])
        .args(["--data", data.path().to_str().unwrap(), "--device", "cpu"])
        .args(["--out", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("held out 20 % of each class"), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(v["split"]["kind"], "stratified");
    assert_eq!(v["split"]["test_fraction"], 0.2);
    assert_eq!(v["split"]["seed"], 0);
    let n = &v["samples"];
    assert_eq!(n["skipped"], 1, "{n}");
    // 31 files in a (round(6.2) = 6 held out), 30 in b (6 held out); the corrupt one skipped
    let (train, test) = (n["train"].as_u64().unwrap(), n["test"].as_u64().unwrap());
    assert_eq!(train + test, 60, "{n}");
    assert!(test == 12 || test == 11, "{n}");
    for b in v["blocks"].as_array().unwrap() {
        let k1 = b["knn"]["k1"].as_f64().unwrap();
        assert!(k1 < 1.0, "1-NN of twins with opposite labels: {b}");
    }
}
