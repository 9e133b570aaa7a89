//! Positional-embedding resize conventions (method.md §1.2): the default follows the checkpoint
//! family, `--pos-interp`, `model.pos_interp` and export metadata override it, bad values are named.

mod common;
use common::fixture;
use mimr::checkpoint::{self, st};
use mimr::model::pos_embed::PosInterp;
use mimr::refine::config::RefineConfig;
use std::path::Path;
use std::process::Command;

const TIMM: (&str, Option<usize>) = ("timm_layerscale.safetensors", None);
const PLAIN_FAMILIES: [(&str, Option<usize>); 3] = [
    ("mae_prenorm.pth", Some(2)),
    ("d2v2_postnorm.pt", Some(4)),
    ("refined_prenorm.th", None),
];

fn interp_of(path: &Path, heads: Option<usize>) -> PosInterp {
    let ck = checkpoint::load(path, heads).expect("checkpoint loads");
    let built = ck
        .build(&burn::tensor::Device::flex())
        .expect("model builds");
    assert_eq!(
        built.pos_interp, ck.config.pos_interp,
        "the model uses the config's choice"
    );
    ck.config.pos_interp
}

#[test]
fn family_default_is_antialiased_for_timm_and_plain_for_the_reference_families() {
    assert_eq!(
        interp_of(&fixture(TIMM.0), TIMM.1),
        PosInterp::BicubicAntialias
    );
    for (name, heads) in PLAIN_FAMILIES {
        assert_eq!(
            interp_of(&fixture(name), heads),
            PosInterp::Bicubic,
            "{name}"
        );
    }
}

#[test]
fn override_and_export_metadata_keep_the_choice() {
    let dir = tempfile::tempdir().unwrap();
    for (name, heads) in [TIMM, PLAIN_FAMILIES[0]] {
        let ck = checkpoint::load(&fixture(name), heads).unwrap();
        let default = ck.config.pos_interp;
        for choice in [PosInterp::Bicubic, PosInterp::BicubicAntialias] {
            let ck = checkpoint::load(&fixture(name), heads)
                .unwrap()
                .with_pos_interp(Some(choice));
            assert_eq!(ck.config.pos_interp, choice, "{name}: override");
            let out = dir
                .path()
                .join(format!("{name}.{}.safetensors", choice.name()));
            checkpoint::export_timm(&ck, &out).unwrap();
            let meta = st::read(&out).unwrap().metadata;
            assert_eq!(meta["pos_interp"], choice.name(), "{name}: metadata");
            assert_eq!(interp_of(&out, None), choice, "{name}: reloaded export");
        }
        let ck = ck.with_pos_interp(None);
        assert_eq!(
            ck.config.pos_interp, default,
            "{name}: None keeps the default"
        );
    }
}

#[test]
fn bad_metadata_value_names_file_key_value_and_choices() {
    let dir = tempfile::tempdir().unwrap();
    let f = st::read(&fixture(TIMM.0)).unwrap();
    let mut meta = f.metadata.clone();
    meta.insert("pos_interp".into(), "bilinear".into());
    let path = dir.path().join("bad.safetensors");
    st::write(&path, &f.tensors, meta).unwrap();
    let err = format!(
        "{:#}",
        checkpoint::load(&path, None).err().expect("must fail")
    );
    for part in [
        "bad.safetensors",
        "pos_interp",
        "bilinear",
        "bicubic-antialias",
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
}

fn mimr(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mimr"))
        .args(args)
        .output()
        .expect("mimr runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.success(), text(&o.stdout), text(&o.stderr))
}

#[test]
fn cli_flag_overrides_the_family_and_rejects_unknown_values() {
    let timm = fixture(TIMM.0).display().to_string();
    let arch = |extra: &[&str]| {
        let mut args = vec!["info", timm.as_str(), "--json"];
        args.extend(extra);
        let (ok, out, err) = mimr(&args);
        assert!(ok, "mimr {args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["architecture"]["pos_interp"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(arch(&[]), "bicubic-antialias");
    assert_eq!(arch(&["--pos-interp", "bicubic"]), "bicubic");
    let (ok, _, err) = mimr(&["info", &timm, "--pos-interp", "bilinear"]);
    assert!(!ok);
    for part in ["--pos-interp", "bilinear", "bicubic", "bicubic-antialias"] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
}

#[test]
fn refine_config_key_overrides_the_family_and_rejects_unknown_values() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
    let load = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        RefineConfig::load(&base, &sets)
    };
    // the example refines a MIM-Refiner .th: the reference's plain bicubic unless overridden
    let interp = |sets: &[&str]| load(sets).unwrap().model.load().unwrap().config.pos_interp;
    assert_eq!(interp(&[]), PosInterp::Bicubic);
    let aa = "model.pos_interp=\"bicubic-antialias\"";
    assert_eq!(interp(&[aa]), PosInterp::BicubicAntialias);
    let timm = format!("model.checkpoint=\"{}\"", fixture(TIMM.0).display());
    assert_eq!(interp(&[&timm]), PosInterp::BicubicAntialias);
    assert_eq!(
        interp(&[&timm, "model.pos_interp=\"bicubic\""]),
        PosInterp::Bicubic
    );
    let err = format!(
        "{:#}",
        load(&["model.pos_interp=\"bilinear\""]).unwrap_err()
    );
    for part in ["pos_interp", "bilinear", "bicubic-antialias"] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
}
