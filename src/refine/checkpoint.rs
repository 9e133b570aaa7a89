//! The refinement's part of a checkpoint folder: encoder, EMA, heads (with BN statistics), queues
//! and optimizer moments in one safetensors file plus a JSON state (`train::Checkpoints` swaps it in).

use super::heads::Head;
use super::optim::{AdamW, SavedSteps, param_values};
use super::queue::NnQueue;
use super::trainer::{Refiner, Trainer};
use crate::checkpoint::st;
use crate::host::{HostTensor, TensorMap};
use crate::model::vit::Vit;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The refinement's scalar state stored next to its tensors (the loop's own state, step and
/// run-log offset and loader position, is in `progress.json`: `train::Resume`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub step: u64,
    /// The largest per-parameter optimizer step. Checkpoints written before per-parameter steps
    /// hold only this global count; every parameter with moments then gets it.
    pub opt_step: u64,
    /// Each parameter's own AdamW step, by the path of its `opt.m.*`/`opt.v.*` moments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_steps: Option<BTreeMap<String, u64>>,
    /// The stage whose updates the optimizer holds (stage 3 starts a fresh one). Older
    /// checkpoints lack it: stage 3 if they hold encoder moments, else 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_stage: Option<u8>,
    pub heads: Vec<String>,
    pub queues: Vec<QueueState>,
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

/// Writes the trainer's state into checkpoint folder `folder` (`train::Checkpoints` makes the
/// folder appear atomically): `state.safetensors`, `state.json`, `config.toml`.
pub fn save(t: &Trainer, folder: &Path) -> Result<()> {
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
    let opt_steps = t.opt.steps();
    let state = State {
        step: t.step,
        opt_step: opt_steps.values().copied().max().unwrap_or(0),
        opt_steps: Some(opt_steps),
        opt_stage: Some(t.opt_stage),
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
    st::write(&folder.join("state.safetensors"), &map, HashMap::new())?;
    let json = serde_json::to_string_pretty(&state)?;
    std::fs::write(folder.join("state.json"), json)
        .with_context(|| format!("cannot write {}", folder.display()))?;
    std::fs::write(folder.join("config.toml"), t.cfg.to_toml()?)
        .with_context(|| format!("cannot write {}", folder.display()))
}

/// Restores a trainer's state from checkpoint folder `dir`; returns the stored state.
pub fn load(t: &mut Trainer, dir: &Path) -> Result<State> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let state: State = serde_json::from_str(&text)
        .with_context(|| format!("{}: corrupt; move this checkpoint away", path.display()))?;
    let names: Vec<String> = t.specs.iter().map(|s| s.name.clone()).collect();
    anyhow::ensure!(
        state.heads == names,
        "{}: checkpoint heads {:?} differ from the config's {:?}",
        dir.display(),
        state.heads,
        names
    );
    let map = st::read(&dir.join("state.safetensors"))?.tensors;
    // build everything first: a failed load leaves the trainer untouched
    let ad = t.device.clone().autodiff();
    let encoder = Vit::from_tensors(&t.vit, &strip(&map, "encoder."), &ad)?;
    let ema = Vit::from_tensors(&t.vit, &strip(&map, "ema."), &t.device)?;
    let heads = names
        .iter()
        .map(|n| Head::from_tensors(&map, &format!("heads.{n}."), &ad))
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(
        state.queues.len() == names.len(),
        "{}: {} queues for {} heads",
        dir.display(),
        state.queues.len(),
        names.len()
    );
    let queues = names
        .iter()
        .zip(&state.queues)
        .map(|(n, q)| {
            let x: &HostTensor = map
                .get(&format!("queue.{n}.x"))
                .with_context(|| format!("{}: queue tensor of head {n} missing", dir.display()))?;
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
    let model = Refiner { encoder, heads }.train();
    let (opt, opt_stage) = load_optimizer(&state, &map, &model, &t.device)
        .with_context(|| format!("{}: optimizer state", dir.display()))?;
    t.ema = ema;
    t.model = Some(model);
    t.queues = queues;
    t.opt = opt;
    t.opt_stage = opt_stage;
    t.step = state.step;
    Ok(state)
}

/// The AdamW state of a checkpoint and the stage it serves, checked against `model`.
fn load_optimizer(
    state: &State,
    map: &TensorMap,
    model: &Refiner,
    device: &burn::tensor::Device,
) -> Result<(AdamW, u8)> {
    let mut opt = AdamW::new();
    let steps = match &state.opt_steps {
        Some(s) => SavedSteps::PerParameter(s),
        None => SavedSteps::Global(state.opt_step),
    };
    opt.load_state(&strip(map, "opt."), steps, device)?;
    opt.check_against(&param_values(model))?;
    let stage = match state.opt_stage {
        Some(s @ (2 | 3)) => s,
        Some(s) => anyhow::bail!("optimizer stage {s} is not 2 or 3"),
        None if opt.holds("encoder.") => 3,
        None => 2,
    };
    Ok((opt, stage))
}

/// The EMA encoder of a trainer as an importable checkpoint (timm names, `mimr export` format).
pub fn export_ema(t: &Trainer, path: &Path) -> Result<()> {
    crate::checkpoint::export_encoder(&t.vit, t.ema.to_tensors()?, "refine", path)
}
