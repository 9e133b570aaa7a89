//! The refinement's part of a checkpoint folder: encoder, EMA, heads (with BN statistics), queues
//! and optimizer moments in one safetensors file plus a JSON state (`train::Checkpoints` swaps it in).

use super::heads::Head;
use super::optim::{AdamW, SavedSteps, param_values};
use super::queue::NnQueue;
use super::trainer::{Refiner, Trainer};
use crate::host::{HostTensor, TensorMap};
use crate::model::vit::Vit;
use crate::train::driver::{PROGRESS_FILE, Resume};
use crate::train::state_file::{
    self, Check, STATE_FILE, Shapes, TENSORS_FILE, prefixed, shapes, strip,
};
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// Writes the trainer's state into checkpoint folder `folder` (`train::Checkpoints` makes the
/// folder appear atomically): `state.safetensors`, `state.json`, `config.toml`.
pub fn save(t: &Trainer, folder: &Path) -> Result<()> {
    let (map, state) = state_of(t)?;
    state_file::write(folder, &map, &state)?;
    std::fs::write(folder.join("config.toml"), t.cfg.to_toml()?)
        .with_context(|| format!("cannot write {}", folder.display()))
}

/// Bytes that differ when any part of the training state does (ranks compare their digests).
pub fn state_bytes(t: &Trainer) -> Result<Vec<u8>> {
    let (map, state) = state_of(t)?;
    let mut out = serde_json::to_vec(&state)?;
    for (k, v) in &map {
        out.extend_from_slice(k.as_bytes());
        out.extend(v.data.iter().flat_map(|x| x.to_le_bytes()));
    }
    Ok(out)
}

/// The tensors and scalar state a checkpoint stores.
fn state_of(t: &Trainer) -> Result<(TensorMap, State)> {
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
    Ok((map, state))
}

/// Restores a trainer's state from checkpoint folder `dir`; returns the stored state. Both files
/// are checked against the trainer as built from the config ([`check`]) before anything is
/// built from them; a failed load leaves the trainer untouched.
pub fn load(t: &mut Trainer, dir: &Path) -> Result<State> {
    let (state, map): (State, TensorMap) = state_file::read(dir)?;
    check(t, dir, &state, &map)?;
    let names: Vec<String> = t.specs.iter().map(|s| s.name.clone()).collect();
    let ad = t.device.clone().autodiff();
    let encoder = Vit::from_tensors(&t.vit, &strip(&map, "encoder."), &ad)?;
    let ema = Vit::from_tensors(&t.vit, &strip(&map, "ema."), &t.device)?;
    let heads = names
        .iter()
        .map(|n| Head::from_tensors(&map, &format!("heads.{n}."), &ad))
        .collect::<Result<Vec<_>>>()?;
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

/// Checks a checkpoint's `state.json` and `state.safetensors` against trainer `t` as built from
/// the config: heads, queue sizes and pointers, step counts (against `progress.json` where there
/// is one), the optimizer's stage; then every tensor's name and exact shape against `t`'s own
/// (encoder, EMA, heads with BN statistics, queues; optimizer moments against the parameters),
/// no tensor unexpected, and every value finite. Extra keys are refused: the writer writes
/// exactly this set.
pub fn check(t: &Trainer, dir: &Path, state: &State, map: &TensorMap) -> Result<()> {
    let model = t.model.as_ref().context("model missing")?;
    let names: Vec<String> = t.specs.iter().map(|s| s.name.clone()).collect();
    let mut c = Check::new(dir, STATE_FILE);
    c.ensure(state.heads == names, || {
        format!(
            "`heads` is {:?}, the config's heads are {names:?}",
            state.heads
        )
    });
    c.ensure(state.queues.len() == names.len(), || {
        format!(
            "`queues` holds {} queues, expected one per head ({})",
            state.queues.len(),
            names.len()
        )
    });
    for (i, ((name, q), fresh)) in names.iter().zip(&state.queues).zip(&t.queues).enumerate() {
        let n = fresh.len();
        for (field, len) in [
            ("idx", q.idx.len()),
            ("label", q.label.len()),
            ("age", q.age.len()),
        ] {
            c.ensure(len == n, || {
                format!("`queues[{i}].{field}` (head {name}) has {len} entries, expected the queue size {n}")
            });
        }
        c.ensure(q.ptr < n, || {
            format!(
                "`queues[{i}].ptr` (head {name}) is {}, expected below the queue size {n}",
                q.ptr
            )
        });
        for (field, v) in [("idx", &q.idx), ("label", &q.label)] {
            if let Some(bad) = v.iter().find(|&&x| x < -1) {
                c.ensure(false, || {
                    format!("`queues[{i}].{field}` (head {name}) holds {bad}, expected ≥ -1")
                });
            }
        }
    }
    if dir.join(PROGRESS_FILE).exists() {
        let progress = Resume::read(dir)?;
        c.ensure(progress.step == state.step, || {
            format!(
                "`step` is {}, {PROGRESS_FILE} says {}",
                state.step, progress.step
            )
        });
    }
    c.ensure(state.opt_step <= state.step, || {
        format!(
            "`opt_step` is {}, more than `step` {}",
            state.opt_step, state.step
        )
    });
    if let Some(steps) = &state.opt_steps {
        let max = steps.values().copied().max().unwrap_or(0);
        c.ensure(max == state.opt_step, || {
            format!(
                "`opt_step` is {}, the largest of `opt_steps` {max}",
                state.opt_step
            )
        });
    }
    if let Some(s) = state.opt_stage {
        c.ensure(matches!(s, 2 | 3), || {
            format!("`opt_stage` is {s}, expected 2 or 3")
        });
    }
    let encoder_moments = map.keys().any(|k| k.starts_with("opt.m.encoder."));
    c.ensure(state.opt_stage != Some(2) || !encoder_moments, || {
        format!("`opt_stage` is 2 (encoder frozen), but {TENSORS_FILE} holds encoder moments")
    });
    c.done()?;
    let mut want = Shapes::new();
    let encoder = model.encoder.to_tensors()?;
    shapes(&encoder, "encoder.", &mut want);
    shapes(&encoder, "ema.", &mut want);
    drop(encoder);
    for (spec, (head, q)) in t.specs.iter().zip(model.heads.iter().zip(&t.queues)) {
        let mut h = TensorMap::new();
        head.to_tensors(&format!("heads.{}.", spec.name), &mut h)?;
        shapes(&h, "", &mut want);
        want.insert(format!("queue.{}.x", spec.name), q.host_x()?.shape);
    }
    let mut c = Check::new(dir, TENSORS_FILE);
    c.tensors(map, &want, &["opt."]);
    c.optimizer(map, "opt.", model, state.opt_steps.as_ref(), state.step);
    c.finite(map);
    c.done()
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
