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
