//! Resuming from a damaged or mismatched checkpoint (`state.json`, `state.safetensors`,
//! `progress.json`) is an error that names the file and the key, never a panic (the CLI exits
//! with code 1), and leaves the checkpoint folder and the run log exactly as they were.

mod common;
use mimr::checkpoint::st;
use mimr::host::{HostTensor, TensorMap};
use mimr::pretrain::config::PretrainConfig;
use mimr::pretrain::run::pretrain;
use mimr::refine::config::RefineConfig;
use mimr::refine::run::refine;
use mimr::train::{Checkpoints, Control};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn refine_sets(dir: &Path) -> Vec<String> {
    vec![
        format!("run.dir=\"{}\"", dir.display()),
        format!("data.train=\"{}\"", common::fashion_mnist().display()),
        "run.device=\"cpu\"".into(),
        "data.workers=1".into(),
        "data.limit=64".into(),
        "data.batch_size=32".into(),
        "stage2.epochs=1".into(),
        "stage3.epochs=1".into(),
        "heads.queue_size=64".into(),
        "run.checkpoint_every=100".into(),
        "run.snapshot_every=0".into(),
        "run.probe_size=16".into(),
        "eval.every_epochs=0".into(),
    ]
}

fn refine_config(dir: &Path, extra: &[&str]) -> RefineConfig {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
    let mut sets = refine_sets(dir);
    sets.extend(extra.iter().map(|s| s.to_string()));
    RefineConfig::load(&base, &sets).expect("config loads")
}

fn pretrain_config(dir: &Path, extra: &[&str]) -> PretrainConfig {
    let mut sets = vec![
        "data.workers=1",
        "data.limit=64",
        "optim.epochs=2",
        "run.checkpoint_every=100",
    ];
    sets.extend_from_slice(extra);
    common::tiny_mae_config(dir, &sets).expect("config loads")
}

/// A refinement stopped after 3 of its 4 steps (stage 3 under way: encoder moments stored),
/// made once per test process and copied for each case.
fn refine_template() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let out = refine(
            refine_config(d.path(), &["run.max_steps=3"]),
            &Control::default(),
        )
        .expect("template run");
        assert_eq!(out.steps, 3);
        d
    })
    .path()
}

/// A pre-training stopped after 3 of its 4 steps.
fn pretrain_template() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let out = pretrain(
            pretrain_config(d.path(), &["run.max_steps=3"]),
            &Control::default(),
        )
        .expect("template run");
        assert_eq!(out.steps, 3);
        d
    })
    .path()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A damaged copy of a template run: `edit` changes its newest checkpoint folder.
struct Case {
    dir: tempfile::TempDir,
    ckpt: PathBuf,
}

impl Case {
    fn new(template: &Path, edit: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(template, dir.path());
        let ckpt = Checkpoints::open(dir.path())
            .unwrap()
            .latest()
            .unwrap()
            .expect("template has a checkpoint");
        edit(&ckpt);
        Self { dir, ckpt }
    }

    /// The checkpoint folder's files and the run log, to compare before and after a resume.
    fn kept(&self) -> (BTreeMap<PathBuf, Vec<u8>>, Vec<u8>) {
        let log = std::fs::read(self.dir.path().join(mimr::runlog::FILE)).unwrap();
        (files(&self.dir.path().join("checkpoints")), log)
    }
}

/// Edits `state.json` as JSON.
fn edit_json(ckpt: &Path, name: &str, edit: impl FnOnce(&mut Value)) {
    let path = ckpt.join(name);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Edits `state.safetensors` as a tensor map.
fn edit_tensors(ckpt: &Path, edit: impl FnOnce(&mut TensorMap)) {
    let path = ckpt.join("state.safetensors");
    let mut t = st::read(&path).unwrap().tensors;
    edit(&mut t);
    st::write(&path, &t, Default::default()).unwrap();
}

/// Cuts file `name` of `ckpt` to half its length.
fn truncate(ckpt: &Path, name: &str) {
    let path = ckpt.join(name);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
}

/// The first key of `t` starting with `prefix`.
fn key(t: &TensorMap, prefix: &str) -> String {
    t.keys()
        .find(|k| k.starts_with(prefix))
        .unwrap_or_else(|| panic!("no tensor under {prefix}"))
        .clone()
}

/// Resumes the refinement of `case` in-process: it must fail with every one of `parts` in the
/// message, and leave the checkpoint folder and run log as they were.
fn refine_fails(case: &Case, parts: &[&str]) -> String {
    let before = case.kept();
    let err = refine(refine_config(case.dir.path(), &[]), &Control::default())
        .expect_err("a damaged checkpoint must not resume");
    let msg = format!("{err:#}");
    eprintln!("{msg}\n");
    for p in parts {
        assert!(msg.contains(p), "{p:?} missing from: {msg}");
    }
    assert!(
        msg.contains("move the folder") && msg.contains(&case.ckpt.display().to_string()),
        "no fix named: {msg}"
    );
    assert!(
        before == case.kept(),
        "the checkpoint or log changed: {msg}"
    );
    msg
}

#[test]
fn the_undamaged_template_resumes() {
    let case = Case::new(refine_template(), |_| {});
    let out = refine(refine_config(case.dir.path(), &[]), &Control::default()).unwrap();
    assert_eq!((out.resumed_from, out.steps), (Some(3), 4));
}

#[test]
fn damaged_refine_state_json_names_the_field() {
    let t = refine_template();
    let case = Case::new(t, |c| {
        edit_json(c, "state.json", |v| v["queues"][0]["ptr"] = 1000.into())
    });
    refine_fails(
        &case,
        &["state.json", "`queues[0].ptr`", "is 1000", "queue size 64"],
    );
    let case = Case::new(t, |c| {
        edit_json(c, "state.json", |v| {
            v["queues"][0]["label"].as_array_mut().unwrap().pop();
        })
    });
    refine_fails(&case, &["`queues[0].label`", "has 63 entries", "64"]);
    let case = Case::new(t, |c| {
        edit_json(c, "state.json", |v| v["heads"][0] = "bogus".into())
    });
    refine_fails(&case, &["`heads` is [\"bogus\"", "the config's heads are"]);
    let case = Case::new(t, |c| {
        edit_json(c, "state.json", |v| v["opt_stage"] = 7.into())
    });
    refine_fails(&case, &["`opt_stage` is 7, expected 2 or 3"]);
    let case = Case::new(t, |c| edit_json(c, "state.json", |v| v["step"] = 2.into()));
    refine_fails(&case, &["`step` is 2, progress.json says 3"]);
    let case = Case::new(t, |c| truncate(c, "state.json"));
    refine_fails(&case, &["state.json: unreadable"]);
}

#[test]
fn damaged_refine_tensors_are_named_with_expected_and_found_shapes() {
    let t = refine_template();
    let mut missing = String::new();
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            missing = key(m, "encoder.blocks.0.");
            m.remove(&missing);
        })
    });
    refine_fails(
        &case,
        &["state.safetensors", &format!("`{missing}` missing")],
    );
    let mut head = String::new();
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            head = m
                .keys()
                .find(|k| k.starts_with("heads.") && k.ends_with(".0.weight"))
                .unwrap()
                .clone();
            let s = m[&head].shape.clone();
            let wrong = vec![s[0] + 1, s[1]];
            let n = wrong.iter().product();
            m.insert(head.clone(), HostTensor::new(wrong, vec![0.0; n]).unwrap());
        })
    });
    refine_fails(&case, &[&format!("`{head}` has shape"), "expected"]);
    let mut bn = String::new();
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            bn = m
                .keys()
                .find(|k| k.ends_with("running_var"))
                .unwrap()
                .clone();
            m.insert(bn.clone(), HostTensor::new(vec![1], vec![1.0]).unwrap());
        })
    });
    refine_fails(&case, &[&format!("`{bn}` has shape [1]")]);
    let mut moment = String::new();
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            moment = key(m, "opt.m.encoder.");
            m.insert(
                moment.clone(),
                HostTensor::new(vec![3], vec![0.0; 3]).unwrap(),
            );
        })
    });
    refine_fails(
        &case,
        &[&format!("tensor `{moment}` has shape [3], expected [")],
    );
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            let q = key(m, "queue.");
            m.insert(q, HostTensor::new(vec![2, 2], vec![0.0; 4]).unwrap());
            m.insert(
                "extra.thing".into(),
                HostTensor::new(vec![1], vec![0.0]).unwrap(),
            );
        })
    });
    refine_fails(
        &case,
        &[
            "2 problems",
            "has shape [2, 2], expected [64, ",
            "unexpected tensor `extra.thing`",
        ],
    );
    let mut nan = String::new();
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            nan = key(m, "ema.");
            m.get_mut(&nan).unwrap().data[0] = f32::NAN;
        })
    });
    refine_fails(&case, &[&format!("`{nan}` holds 1 non-finite values")]);
    let case = Case::new(t, |c| truncate(c, "state.safetensors"));
    refine_fails(
        &case,
        &["state.safetensors: unreadable", "truncated or corrupt"],
    );
}

#[test]
fn damaged_progress_json_is_refused() {
    let t = refine_template();
    let case = Case::new(t, |c| {
        edit_json(c, "progress.json", |v| {
            v["data_pos"]["sample"] = 1_000_000.into()
        })
    });
    refine_fails(&case, &["progress.json", "`data_pos.sample` is 1000000"]);
    let case = Case::new(t, |c| truncate(c, "progress.json"));
    refine_fails(&case, &["progress.json: unreadable"]);
}

#[test]
fn the_cli_exits_with_code_1_and_names_the_key() {
    let t = refine_template();
    for (edit, part) in [
        (
            Box::new(|c: &Path| edit_json(c, "state.json", |v| v["queues"][0]["ptr"] = 64.into()))
                as Box<dyn Fn(&Path)>,
            "`queues[0].ptr` (head",
        ),
        (
            Box::new(|c: &Path| truncate(c, "state.safetensors")),
            "state.safetensors: unreadable",
        ),
    ] {
        let case = Case::new(t, edit);
        let before = case.kept();
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mimr"));
        cmd.args(["refine", "--config", cfg.to_str().unwrap()]);
        for s in refine_sets(case.dir.path()) {
            cmd.args(["--set", &s]);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(before == case.kept(), "the checkpoint or log changed");
    }
}

/// Resumes the pre-training of `case`: it must fail naming every one of `parts` and leave the
/// checkpoint folder and run log as they were.
fn pretrain_fails(case: &Case, parts: &[&str]) {
    let before = case.kept();
    let err = pretrain(pretrain_config(case.dir.path(), &[]), &Control::default())
        .expect_err("a damaged checkpoint must not resume");
    let msg = format!("{err:#}");
    for p in parts {
        assert!(msg.contains(p), "{p:?} missing from: {msg}");
    }
    assert!(msg.contains("move the folder"), "no fix named: {msg}");
    assert!(
        before == case.kept(),
        "the checkpoint or log changed: {msg}"
    );
}

#[test]
fn damaged_pretrain_checkpoints_name_the_key() {
    let t = pretrain_template();
    let case = Case::new(t, |_| {});
    let out = pretrain(pretrain_config(case.dir.path(), &[]), &Control::default()).unwrap();
    assert_eq!((out.resumed_from, out.steps), (Some(3), 4));
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            m.remove("model.decoder_pred.weight");
        })
    });
    pretrain_fails(
        &case,
        &["state.safetensors", "`model.decoder_pred.weight` missing"],
    );
    let mut moment = String::new();
    let case = Case::new(t, |c| {
        edit_tensors(c, |m| {
            moment = key(m, "opt.v.");
            m.insert(
                moment.clone(),
                HostTensor::new(vec![5], vec![0.0; 5]).unwrap(),
            );
        })
    });
    pretrain_fails(&case, &[&format!("tensor `{moment}` has shape [5]")]);
    let case = Case::new(t, |c| {
        edit_json(c, "state.json", |v| {
            let steps = v["opt_steps"].as_object_mut().unwrap();
            let k = steps.keys().next().unwrap().clone();
            steps[&k] = 99.into();
        })
    });
    pretrain_fails(&case, &["step count of", "is 99, expected 1..=3"]);
    let case = Case::new(t, |c| truncate(c, "state.safetensors"));
    pretrain_fails(&case, &["state.safetensors: unreadable"]);
}
