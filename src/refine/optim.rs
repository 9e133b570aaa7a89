//! AdamW with per-parameter groups (method.md §4.2, §1.5): each parameter's LR scale and weight
//! decay come from its path; moments and step counts are kept by path so they can be checkpointed.

use crate::host::{HostTensor, TensorMap, host};
use anyhow::{Context, Result, ensure};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use std::collections::{BTreeMap, HashMap};

/// Hyper-parameters of one parameter as decided by its group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    pub lr_scale: f64,
    pub weight_decay: f64,
}

/// The state of one parameter: first and second moments (flattened) and its own update count,
/// as `torch.optim.AdamW` keeps `state[p]["step"]`: a parameter without a gradient in an update
/// does not advance, and bias correction uses this count.
struct Slot {
    m: Tensor<1>,
    v: Tensor<1>,
    step: u64,
}

/// The per-parameter step counts stored with a checkpoint's moments.
pub enum SavedSteps<'a> {
    /// Every parameter's own count (current checkpoints).
    PerParameter(&'a BTreeMap<String, u64>),
    /// One count for all (checkpoints written before per-parameter steps): every parameter that
    /// has moments gets it.
    Global(u64),
}

/// AdamW state: per-parameter moments and step counts by parameter path.
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    slots: HashMap<String, Slot>,
}

impl AdamW {
    /// β = (0.9, 0.95), ε = 1e-8 (method.md §4.2); no state.
    pub fn new() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            slots: HashMap::new(),
        }
    }

    /// One update of every parameter of `module` that has a gradient. `group(path, ndim)` gives
    /// its LR scale and weight decay; `prefix` namespaces the state (e.g. "encoder.").
    pub fn update<M: Module>(
        &mut self,
        module: M,
        grads: &mut GradientsParams,
        lr: f64,
        prefix: &str,
        group: &dyn Fn(&str, usize) -> Group,
    ) -> M {
        let mut mapper = Mapper {
            opt: self,
            grads,
            lr,
            prefix: prefix.to_string(),
            path: Vec::new(),
            group,
        };
        module.map(&mut mapper)
    }

    /// Whether some parameter under `prefix` has state.
    pub fn holds(&self, prefix: &str) -> bool {
        self.slots.keys().any(|k| k.starts_with(prefix))
    }

    /// The update count of parameter `key` (`None`: it never had a gradient).
    pub fn step_of(&self, key: &str) -> Option<u64> {
        self.slots.get(key).map(|s| s.step)
    }

    /// Every parameter's update count, by path (for checkpoints).
    pub fn steps(&self) -> BTreeMap<String, u64> {
        self.slots
            .iter()
            .map(|(k, s)| (k.clone(), s.step))
            .collect()
    }

    /// Moments as host tensors (`m.<path>`, `v.<path>`) for checkpoints; see [`AdamW::steps`].
    pub fn state(&self) -> Result<TensorMap> {
        let mut out = TensorMap::new();
        for (k, s) in &self.slots {
            out.insert(format!("m.{k}"), host(s.m.clone())?);
            out.insert(format!("v.{k}"), host(s.v.clone())?);
        }
        Ok(out)
    }

    /// Restores the state written by [`AdamW::state`] and [`AdamW::steps`]. Every `m.<path>`
    /// needs its `v.<path>` of the same length and a step count ≥ 1; nothing else may be left.
    /// On error the optimizer is unchanged.
    pub fn load_state(
        &mut self,
        map: &TensorMap,
        steps: SavedSteps,
        device: &burn::tensor::Device,
    ) -> Result<()> {
        let mut slots = HashMap::new();
        for (k, m) in map {
            let Some(name) = k.strip_prefix("m.") else {
                ensure!(k.starts_with("v."), "unexpected optimizer tensor `{k}`");
                continue;
            };
            slots.insert(name.to_string(), slot(map, name, m, &steps, device)?);
        }
        check_orphans(map, &steps)?;
        self.slots = slots;
        Ok(())
    }

    /// Every parameter with state must exist in `params` (by path, flattened) with its length.
    pub fn check_against(&self, params: &HashMap<String, Tensor<1>>) -> Result<()> {
        for (k, s) in &self.slots {
            let p = params
                .get(k)
                .with_context(|| format!("optimizer state for `{k}`, which the model lacks"))?;
            let (n, want) = (s.m.dims()[0], p.dims()[0]);
            ensure!(
                n == want,
                "optimizer state of `{k}` has {n} values, the parameter {want}"
            );
        }
        Ok(())
    }
}

/// The slot of parameter `name` from its first moment `m`, `v.<name>` and its step count.
fn slot(
    map: &TensorMap,
    name: &str,
    m: &HostTensor,
    steps: &SavedSteps,
    device: &burn::tensor::Device,
) -> Result<Slot> {
    let v = map
        .get(&format!("v.{name}"))
        .with_context(|| format!("optimizer moment `v.{name}` missing"))?;
    ensure!(
        m.numel() == v.numel(),
        "optimizer moments of `{name}` differ in length ({} vs {})",
        m.numel(),
        v.numel()
    );
    let step = match steps {
        SavedSteps::PerParameter(s) => *s
            .get(name)
            .with_context(|| format!("optimizer step count of `{name}` missing"))?,
        SavedSteps::Global(s) => *s,
    };
    ensure!(step >= 1, "optimizer step count of `{name}` is 0");
    let up = |t: &HostTensor| {
        Tensor::<1>::from_data(TensorData::new(t.data.clone(), [t.numel()]), device)
    };
    Ok(Slot {
        m: up(m),
        v: up(v),
        step,
    })
}

/// Second moments and step counts must each belong to a first moment.
fn check_orphans(map: &TensorMap, steps: &SavedSteps) -> Result<()> {
    for k in map.keys().filter_map(|k| k.strip_prefix("v.")) {
        ensure!(
            map.contains_key(&format!("m.{k}")),
            "optimizer moment `m.{k}` missing"
        );
    }
    if let SavedSteps::PerParameter(s) = steps {
        for k in s.keys() {
            ensure!(
                map.contains_key(&format!("m.{k}")),
                "optimizer step count of `{k}` has no moments"
            );
        }
    }
    Ok(())
}

impl Default for AdamW {
    fn default() -> Self {
        Self::new()
    }
}

struct Mapper<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr: f64,
    prefix: String,
    path: Vec<String>,
    group: &'a dyn Fn(&str, usize) -> Group,
}

impl Mapper<'_> {
    /// The AdamW update of one flattened parameter `w` with gradient `grad` (method.md §4.2):
    /// advances the parameter's own step and returns the new value.
    fn adamw(&mut self, key: String, w: Tensor<1>, grad: Tensor<1>, g: Group) -> Tensor<1> {
        let n = w.dims()[0];
        let device = w.device();
        let slot = self.opt.slots.remove(&key).unwrap_or_else(|| Slot {
            m: Tensor::zeros([n], &device),
            v: Tensor::zeros([n], &device),
            step: 0,
        });
        let (b1, b2, t) = (self.opt.beta1, self.opt.beta2, slot.step + 1);
        let m = slot.m.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
        let v = slot.v.mul_scalar(b2) + grad.powi_scalar(2).mul_scalar(1.0 - b2);
        let ti = i32::try_from(t).unwrap_or(i32::MAX);
        let m_hat = m.clone().div_scalar(1.0 - b1.powi(ti));
        let v_hat = v.clone().div_scalar(1.0 - b2.powi(ti));
        let lr = self.lr * g.lr_scale;
        let decayed = w.mul_scalar(1.0 - lr * g.weight_decay);
        let new = decayed - (m_hat / v_hat.sqrt().add_scalar(self.opt.eps)).mul_scalar(lr);
        self.opt.slots.insert(key, Slot { m, v, step: t });
        new
    }
}

impl ModuleMapper for Mapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let path = self.path.join(".");
        let g = (self.group)(&path, D);
        let require_grad = tensor.is_require_grad();
        let w = tensor.inner();
        let dims = w.dims();
        let n = w.shape().num_elements();
        let key = format!("{}{path}", self.prefix);
        let new = self.adamw(key, w.reshape([n]), grad.reshape([n]), g);
        let mut out = Tensor::from_inner(new.reshape(dims));
        if require_grad {
            out = out.require_grad();
        }
        Param::from_mapped_value(id, out, mapper)
    }
}

/// Flattened inner copies of every float parameter of a module, by path.
pub fn param_values<M: Module>(module: &M) -> HashMap<String, Tensor<1>> {
    struct Collect {
        path: Vec<String>,
        out: HashMap<String, Tensor<1>>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _c: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _c: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val().inner();
            let n = t.shape().num_elements();
            self.out.insert(self.path.join("."), t.reshape([n]));
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: HashMap::new(),
    };
    module.visit(&mut c);
    c.out
}

/// `ema ← m·ema + (1−m)·current`, parameter by parameter (method.md §4.2, momentum 0.9999).
pub fn ema_update<M: Module>(ema: M, current: &HashMap<String, Tensor<1>>, momentum: f64) -> M {
    struct Ema<'a> {
        path: Vec<String>,
        current: &'a HashMap<String, Tensor<1>>,
        m: f64,
    }
    impl ModuleMapper for Ema<'_> {
        fn enter_module(&mut self, name: &str, _c: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _c: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(cur) = self.current.get(&self.path.join(".")) else {
                return param;
            };
            let cur = cur.clone();
            let m = self.m;
            param.map(|t| {
                let dims = t.dims();
                t.mul_scalar(m) + cur.reshape(dims).mul_scalar(1.0 - m)
            })
        }
    }
    ema.map(&mut Ema {
        path: Vec::new(),
        current,
        m: momentum,
    })
}
