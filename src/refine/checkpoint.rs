//! Training checkpoints: encoder, EMA, heads (with BN statistics), queues and optimizer moments
//! in one safetensors file plus a JSON state, written atomically; the last N are kept.

use super::heads::Head;
use super::queue::NnQueue;
use super::trainer::{Refiner, Trainer};
use crate::checkpoint::st;
use crate::host::{HostTensor, TensorMap};
use crate::model::vit::Vit;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Scalar state stored next to the tensors.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub step: u64,
    pub opt_step: u64,
    /// Size of events.jsonl when the checkpoint was written.
    pub log_offset: u64,
    pub heads: Vec<String>,
    pub queues: Vec<QueueState>,
    /// Where the loader stands in the current epoch (absent in checkpoints of older versions:
    /// the default position does not match the step, so the resume re-reads the epoch).
    #[serde(default)]
    pub data_pos: crate::data::EpochPosition,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QueueState {
    pub idx: Vec<i64>,
    pub label: Vec<i64>,
    pub age: Vec<u64>,
    pub ptr: usize,
}

fn prefixed(map: TensorMap, prefix: &str, out: &mut TensorMap) {
    out.extend(map.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
}

fn strip(map: &TensorMap, prefix: &str) -> TensorMap {
    map.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
        .collect()
}

/// Writes `dir/ckpt-<step>/{state.safetensors, state.json, config.toml}` atomically (a temp
/// folder renamed into place) and deletes all but the newest `keep` checkpoints.
pub fn save(t: &Trainer, run_dir: &Path, log_offset: u64, keep: usize) -> Result<PathBuf> {
    let model = t.model.as_ref().context("model missing")?;
    let mut map = TensorMap::new();
    prefixed(model.encoder.to_tensors()?, "encoder.", &mut map);
    prefixed(t.ema.to_tensors()?, "ema.", &mut map);
    for (spec, head) in t.specs.iter().zip(&model.heads) {
        head.to_tensors(&format!("heads.{}.", spec.name), &mut map)?;
    }
    for (spec, q) in t.specs.iter().zip(&t.queues) {
        map.insert(format!("queue.{}.x", spec.name), q.host_x()?);
    }
    prefixed(t.opt.state()?, "opt.", &mut map);
    let state = State {
        step: t.step,
        opt_step: t.opt.step,
        log_offset,
        data_pos: t.data_pos,
        heads: t.specs.iter().map(|s| s.name.clone()).collect(),
        queues: t
            .queues
            .iter()
            .map(|q| QueueState {
                idx: q.idx.clone(),
                label: q.label.clone(),
                age: q.age.clone(),
                ptr: q.ptr,
            })
            .collect(),
    };
    let root = run_dir.join("checkpoints");
    let name = format!("ckpt-{:09}", t.step);
    let tmp = root.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    st::write(&tmp.join("state.safetensors"), &map, HashMap::new())?;
    crate::fsutil::write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;
    crate::fsutil::write_atomic(&tmp.join("config.toml"), t.cfg.to_toml()?.as_bytes())?;
    let dest = root.join(&name);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("cannot move checkpoint into {}", dest.display()))?;
    prune(&root, keep)?;
    Ok(dest)
}

/// Checkpoint folders, oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = run_dir.join("checkpoints");
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ckpt-"))
                && p.join("state.json").exists()
        })
        .collect();
    v.sort();
    Ok(v)
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let all = list(root.parent().unwrap_or(root))?;
    for old in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(old)
            .with_context(|| format!("cannot remove old checkpoint {}", old.display()))?;
    }
    Ok(())
}

/// Restores a trainer's state from checkpoint folder `dir`; returns the stored state.
pub fn load(t: &mut Trainer, dir: &Path) -> Result<State> {
    let state: State = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)
        .with_context(|| format!("{}: corrupt state.json", dir.display()))?;
    let names: Vec<String> = t.specs.iter().map(|s| s.name.clone()).collect();
    anyhow::ensure!(
        state.heads == names,
        "{}: checkpoint heads {:?} differ from the config's {:?}",
        dir.display(),
        state.heads,
        names
    );
    let map = st::read(&dir.join("state.safetensors"))?.tensors;
    let ad = t.device.clone().autodiff();
    let encoder = Vit::from_tensors(&t.vit, &strip(&map, "encoder."), &ad)?;
    t.ema = Vit::from_tensors(&t.vit, &strip(&map, "ema."), &t.device)?;
    let heads = names
        .iter()
        .map(|n| Head::from_tensors(&map, &format!("heads.{n}."), &ad))
        .collect::<Result<Vec<_>>>()?;
    t.model = Some(Refiner { encoder, heads }.train());
    t.queues = names
        .iter()
        .zip(&state.queues)
        .map(|(n, q)| {
            let x: &HostTensor = map
                .get(&format!("queue.{n}.x"))
                .context("queue tensor missing")?;
            let xt =
                Tensor::<2>::from_data(TensorData::new(x.data.clone(), x.shape.clone()), &t.device);
            Ok(NnQueue::from_parts(
                xt,
                q.idx.clone(),
                q.label.clone(),
                q.age.clone(),
                q.ptr,
            ))
        })
        .collect::<Result<_>>()?;
    t.opt
        .load_state(&strip(&map, "opt."), state.opt_step, &t.device);
    t.step = state.step;
    t.data_pos = state.data_pos;
    Ok(state)
}

/// The EMA encoder of a trainer as an importable checkpoint (timm names, `mimr export` format).
pub fn export_ema(t: &Trainer, path: &Path) -> Result<()> {
    let ck = crate::checkpoint::Checkpoint {
        format: crate::checkpoint::Format::Safetensors,
        config: t.vit.clone(),
        tensors: t.ema.to_tensors()?,
        heads_source: "refine".into(),
        dropped: Vec::new(),
        extras: Default::default(),
    };
    crate::checkpoint::export_timm(&ck, path)
}
