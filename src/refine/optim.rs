//! AdamW with per-parameter groups (method.md §4.2, §1.5): each parameter's LR scale and weight
//! decay come from its path; moments are kept by path so they can be checkpointed and resumed.

use crate::host::{HostTensor, TensorMap, host};
use anyhow::Result;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use std::collections::HashMap;

/// Hyper-parameters of one parameter as decided by its group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    pub lr_scale: f64,
    pub weight_decay: f64,
}

/// AdamW state: step count and first/second moments (flattened) by parameter path.
#[derive(Default)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub step: u64,
    moments: HashMap<String, (Tensor<1>, Tensor<1>)>,
}

impl AdamW {
    /// β = (0.9, 0.95), ε = 1e-8 (method.md §4.2).
    pub fn new() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// One update of every parameter of `module` that has a gradient. `group(path, ndim)` gives
    /// its LR scale and weight decay; `prefix` namespaces the moments (e.g. "encoder.").
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

    /// Moments as host tensors (`m.<path>`, `v.<path>`) for checkpoints.
    pub fn state(&self) -> Result<TensorMap> {
        let mut out = TensorMap::new();
        for (k, (m, v)) in &self.moments {
            out.insert(format!("m.{k}"), host(m.clone())?);
            out.insert(format!("v.{k}"), host(v.clone())?);
        }
        Ok(out)
    }

    /// Restores moments written by [`AdamW::state`].
    pub fn load_state(&mut self, map: &TensorMap, step: u64, device: &burn::tensor::Device) {
        self.step = step;
        self.moments.clear();
        for (k, m) in map {
            let Some(name) = k.strip_prefix("m.") else {
                continue;
            };
            if let Some(v) = map.get(&format!("v.{name}")) {
                let up = |t: &HostTensor| {
                    Tensor::<1>::from_data(TensorData::new(t.data.clone(), [t.numel()]), device)
                };
                self.moments.insert(name.to_string(), (up(m), up(v)));
            }
        }
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
        let grad = grad.reshape([n]);
        let key = format!("{}{path}", self.prefix);
        let device = w.device();
        let (m, v) = self
            .opt
            .moments
            .remove(&key)
            .unwrap_or_else(|| (Tensor::zeros([n], &device), Tensor::zeros([n], &device)));
        let (b1, b2, t) = (self.opt.beta1, self.opt.beta2, self.opt.step as i32 + 1);
        let m = m.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
        let v = v.mul_scalar(b2) + grad.powi_scalar(2).mul_scalar(1.0 - b2);
        let m_hat = m.clone().div_scalar(1.0 - b1.powi(t));
        let v_hat = v.clone().div_scalar(1.0 - b2.powi(t));
        let lr = self.lr * g.lr_scale;
        let w_flat = w.reshape([n]).mul_scalar(1.0 - lr * g.weight_decay);
        let new = w_flat - (m_hat / v_hat.sqrt().add_scalar(self.opt.eps)).mul_scalar(lr);
        self.opt.moments.insert(key, (m, v));
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
