//! A task's half of a checkpoint folder, shared by refinement and MAE pre-training: tensors in
//! `state.safetensors`, scalars in `state.json`; and the checks a resume runs on them against the
//! freshly built model *before* anything is built from them (burn panics on mismatched shapes,
//! queue code on bad pointers), so a damaged or foreign checkpoint is an error that names the
//! file, the key, expected vs found, and what to do.

use crate::checkpoint::st;
use crate::host::TensorMap;
use crate::refine::optim::param_values;
use anyhow::{Context, Result};
use burn::module::Module;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The tensors of a task's checkpoint state.
pub const TENSORS_FILE: &str = "state.safetensors";
/// The scalar state next to them.
pub const STATE_FILE: &str = "state.json";
/// Problems listed in one error before "… and N more".
const MAX_LISTED: usize = 12;

/// Expected tensor shapes by name.
pub type Shapes = BTreeMap<String, Vec<usize>>;

/// The shapes of `map`'s tensors, each name with `prefix` in front.
pub fn shapes(map: &TensorMap, prefix: &str, out: &mut Shapes) {
    out.extend(
        map.iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.shape.clone())),
    );
}

/// Moves `map`'s tensors into `out`, each name with `prefix` in front.
pub fn prefixed(map: TensorMap, prefix: &str, out: &mut TensorMap) {
    out.extend(map.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
}

/// The tensors of `map` under `prefix`, with the prefix removed.
pub fn strip(map: &TensorMap, prefix: &str) -> TensorMap {
    map.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
        .collect()
}

/// Writes `tensors` and `state` into checkpoint folder `folder` (`state.safetensors` without
/// metadata, `state.json` pretty-printed: the format every earlier version wrote).
pub fn write<S: Serialize>(folder: &Path, tensors: &TensorMap, state: &S) -> Result<()> {
    st::write(&folder.join(TENSORS_FILE), tensors, HashMap::new())?;
    let json = serde_json::to_string_pretty(state)?;
    let path = folder.join(STATE_FILE);
    std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))
}

/// What to do about a checkpoint folder that cannot be resumed.
pub fn fix(folder: &Path) -> String {
    format!(
        "the checkpoint is damaged or was not written for this config: move the folder {} out of its checkpoints/ folder to resume from the previous checkpoint (or move the run directory away to start over)",
        folder.display()
    )
}

/// Reads checkpoint folder `folder`'s `state.json` (parsed as `S`) and `state.safetensors`;
/// nothing is checked beyond the files' syntax ([`Check`] does the rest).
pub fn read<S: DeserializeOwned>(folder: &Path) -> Result<(S, TensorMap)> {
    let path = folder.join(STATE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}; {}", path.display(), fix(folder)))?;
    let state: S = serde_json::from_str(&text)
        .with_context(|| format!("{}: unreadable; {}", path.display(), fix(folder)))?;
    let path = folder.join(TENSORS_FILE);
    let tensors = st::read(&path)
        .with_context(|| format!("{}: unreadable; {}", path.display(), fix(folder)))?
        .tensors;
    Ok((state, tensors))
}

/// Problems found in one file of a checkpoint folder, reported together by [`Check::done`].
pub struct Check {
    folder: PathBuf,
    file: PathBuf,
    problems: Vec<String>,
}

impl Check {
    /// A check of file `name` (e.g. [`TENSORS_FILE`]) of checkpoint folder `folder`.
    pub fn new(folder: &Path, name: &str) -> Self {
        Self {
            folder: folder.to_path_buf(),
            file: folder.join(name),
            problems: Vec::new(),
        }
    }

    /// Records `problem` unless `ok`.
    pub fn ensure(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    /// Every tensor of `expected` must be in `found` with exactly its shape; every tensor of
    /// `found` must be expected, except those under `others` (checked elsewhere, e.g. the
    /// optimizer's moments, which exist only for parameters that had gradients).
    pub fn tensors(&mut self, found: &TensorMap, expected: &Shapes, others: &[&str]) {
        for (k, want) in expected {
            match found.get(k) {
                None => self
                    .problems
                    .push(format!("`{k}` missing (expected shape {want:?})")),
                Some(t) => self.ensure(&t.shape == want, || {
                    format!("`{k}` has shape {:?}, expected {want:?}", t.shape)
                }),
            }
        }
        let unexpected = found
            .iter()
            .filter(|(k, _)| !expected.contains_key(*k))
            .filter(|(k, _)| !others.iter().any(|p| k.starts_with(p)));
        for (k, t) in unexpected {
            self.problems
                .push(format!("unexpected tensor `{k}` (shape {:?})", t.shape));
        }
    }

    /// The AdamW state under `prefix` (`<prefix>m.<path>`, `<prefix>v.<path>`, see
    /// `AdamW::state`) against `model`'s parameters: each moment belongs to a parameter and has
    /// its element count, `m` and `v` come in pairs, and `steps` (when stored per parameter)
    /// has exactly one count in 1..=`max_step` for each.
    pub fn optimizer<M: Module>(
        &mut self,
        found: &TensorMap,
        prefix: &str,
        model: &M,
        steps: Option<&BTreeMap<String, u64>>,
        max_step: u64,
    ) {
        let params: BTreeMap<String, usize> = param_values(model)
            .into_iter()
            .map(|(k, t)| (k, t.dims()[0]))
            .collect();
        let mut moments: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (key, t) in found.iter().filter(|(k, _)| k.starts_with(prefix)) {
            let rest = &key[prefix.len()..];
            let Some((kind @ ("m" | "v"), path)) = rest.split_once('.') else {
                self.problems
                    .push(format!("unexpected optimizer tensor `{key}`"));
                continue;
            };
            moments.entry(path).or_default().insert(kind);
            match params.get(path) {
                None => self.problems.push(format!(
                    "optimizer state for `{path}`, which the model lacks (tensor `{key}`)"
                )),
                Some(&n) => self.ensure(t.shape == [n], || {
                    format!(
                        "optimizer state of `{path}` has {} values, the parameter {n} (tensor `{key}` has shape {:?}, expected [{n}])",
                        t.numel(),
                        t.shape
                    )
                }),
            }
        }
        for (path, kinds) in &moments {
            for kind in ["m", "v"] {
                self.ensure(kinds.contains(kind), || {
                    format!(
                        "optimizer moment `{kind}.{path}` missing (tensor `{prefix}{kind}.{path}`)"
                    )
                });
            }
        }
        let Some(steps) = steps else { return };
        for path in moments.keys() {
            match steps.get(*path) {
                None => self
                    .problems
                    .push(format!("optimizer step count of `{path}` missing")),
                Some(&s) => self.ensure((1..=max_step).contains(&s), || {
                    format!("optimizer step count of `{path}` is {s}, expected 1..={max_step}")
                }),
            }
        }
        for path in steps.keys().filter(|p| !moments.contains_key(p.as_str())) {
            self.problems
                .push(format!("optimizer step count of `{path}` has no moments"));
        }
    }

    /// Every value of every tensor must be finite: a NaN or infinity in the weights, moments or
    /// queues would otherwise turn the resumed run's losses into NaN.
    pub fn finite(&mut self, found: &TensorMap) {
        for (k, t) in found {
            let bad = t.data.iter().filter(|v| !v.is_finite()).count();
            self.ensure(bad == 0, || {
                format!("`{k}` holds {bad} non-finite values (NaN or infinity)")
            });
        }
    }

    /// `Ok` when nothing was found, else one error listing the problems and the fix.
    pub fn done(self) -> Result<()> {
        let n = self.problems.len();
        if n == 0 {
            return Ok(());
        }
        let mut listed = self.problems[..n.min(MAX_LISTED)].join("; ");
        if n > MAX_LISTED {
            listed.push_str(&format!("; … and {} more", n - MAX_LISTED));
        }
        let what = if n == 1 {
            "1 problem".to_string()
        } else {
            format!("{n} problems")
        };
        anyhow::bail!(
            "{}: {what}: {listed}. {}",
            self.file.display(),
            fix(&self.folder)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostTensor;

    fn t(shape: &[usize]) -> HostTensor {
        let n = shape.iter().product();
        HostTensor::new(shape.to_vec(), vec![0.5; n]).unwrap()
    }

    fn problems(c: Check) -> String {
        format!("{:#}", c.done().unwrap_err())
    }

    #[test]
    fn missing_extra_misshaped_and_non_finite_tensors_are_all_named() {
        let expected: Shapes = [("a".into(), vec![2, 3]), ("b".into(), vec![4])].into();
        let mut found = TensorMap::new();
        found.insert("a".into(), t(&[3, 2]));
        found.insert("c".into(), t(&[1]));
        found.insert("opt.m.x".into(), t(&[1]));
        let mut c = Check::new(Path::new("ck"), TENSORS_FILE);
        c.tensors(&found, &expected, &["opt."]);
        let msg = problems(c);
        for part in [
            "state.safetensors: 3 problems",
            "`a` has shape [3, 2], expected [2, 3]",
            "`b` missing (expected shape [4])",
            "unexpected tensor `c` (shape [1])",
            "move the folder ck out",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
        assert!(!msg.contains("opt.m.x"), "{msg}");
        found.insert(
            "b".into(),
            HostTensor::new(vec![4], vec![0.0, f32::NAN, 1.0, f32::INFINITY]).unwrap(),
        );
        let mut c = Check::new(Path::new("ck"), TENSORS_FILE);
        c.finite(&found);
        assert!(problems(c).contains("`b` holds 2 non-finite values"));
        let mut c = Check::new(Path::new("ck"), TENSORS_FILE);
        found.remove("b");
        found.insert("a".into(), t(&[2, 3]));
        found.remove("c");
        c.tensors(&found, &expected, &["opt."]);
        c.finite(&found);
        assert!(problems(c).contains("1 problem: `b` missing"));
        let mut c = Check::new(Path::new("ck"), TENSORS_FILE);
        found.insert("b".into(), t(&[4]));
        c.tensors(&found, &expected, &["opt."]);
        c.finite(&found);
        c.done().unwrap();
    }

    #[test]
    fn long_lists_are_cut() {
        let mut c = Check::new(Path::new("ck"), STATE_FILE);
        for i in 0..20 {
            c.ensure(false, || format!("p{i}"));
        }
        let msg = problems(c);
        assert!(
            msg.contains("20 problems") && msg.contains("… and 8 more"),
            "{msg}"
        );
        assert!(msg.contains("p11") && !msg.contains("p12"), "{msg}");
    }
}
