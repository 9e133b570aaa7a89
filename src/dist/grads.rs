//! Gradients combined over ranks after backward: every parameter's gradient, in the module's
//! visiting order, packed into buckets of [`BUCKET`] floats — one host read, one all-reduce
//! and one upload per bucket.

use super::comm::Comm;
use anyhow::Result;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use std::collections::HashMap;

/// How one parameter's gradient combines over ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Each rank holds a part (its samples' share): the gradient is the sum.
    Sum,
    /// Each rank computed the whole gradient: the mean (equal to each, up to rounding).
    Mean,
}

/// Floats per bucket (16 MiB of f32).
pub const BUCKET: usize = 4 << 20;

/// One gradient on its way through a bucket.
struct Entry {
    id: ParamId,
    dims: Vec<usize>,
    flat: Tensor<1>,
}

/// Combines the gradients in `sources` (together holding at most one per parameter of
/// `module`) over the ranks of `comm`; `how(path)` says how, by the parameter's dotted path.
/// Every rank must hold gradients for the same parameters.
pub fn all_reduce<M: Module>(
    comm: &dyn Comm,
    module: &M,
    sources: Vec<GradientsParams>,
    how: &dyn Fn(&str) -> Reduce,
) -> Result<GradientsParams> {
    let mut take = Take {
        sources,
        path: Vec::new(),
        how,
        scale: 1.0 / comm.size() as f64,
        entries: Vec::new(),
    };
    module.visit(&mut take);
    let mut reduced = HashMap::new();
    let mut entries = take.entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut bucket = Vec::new();
        let mut len = 0;
        while let Some(e) = entries.next_if(|e| len == 0 || len + e.flat.dims()[0] <= BUCKET) {
            len += e.flat.dims()[0];
            bucket.push(e);
        }
        reduce_bucket(comm, bucket, len, &mut reduced)?;
    }
    let mut put = Put {
        reduced,
        out: GradientsParams::new(),
    };
    module.visit(&mut put);
    Ok(put.out)
}

fn reduce_bucket(
    comm: &dyn Comm,
    bucket: Vec<Entry>,
    len: usize,
    out: &mut HashMap<ParamId, (Vec<usize>, Tensor<1>)>,
) -> Result<()> {
    let device = bucket[0].flat.device();
    let lens: Vec<usize> = bucket.iter().map(|e| e.flat.dims()[0]).collect();
    let ids: Vec<(ParamId, Vec<usize>)> = bucket.iter().map(|e| (e.id, e.dims.clone())).collect();
    let joined = Tensor::cat(bucket.into_iter().map(|e| e.flat).collect(), 0);
    let mut host = crate::host::host(joined)?.data;
    comm.all_reduce_sum(&mut host);
    let summed = Tensor::<1>::from_data(TensorData::new(host, [len]), &device);
    let mut at = 0;
    for ((id, dims), n) in ids.into_iter().zip(lens) {
        out.insert(id, (dims, summed.clone().narrow(0, at, n)));
        at += n;
    }
    Ok(())
}

/// Removes each parameter's gradient from the sources, flattened and scaled for its reduction.
struct Take<'a> {
    sources: Vec<GradientsParams>,
    path: Vec<String>,
    how: &'a dyn Fn(&str) -> Reduce,
    scale: f64,
    entries: Vec<Entry>,
}

impl ModuleVisitor for Take<'_> {
    fn enter_module(&mut self, name: &str, _c: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _c: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self
            .sources
            .iter_mut()
            .find_map(|s| s.remove::<D>(param.id))
        else {
            return;
        };
        let dims = g.dims().to_vec();
        let flat = g.reshape([dims.iter().product::<usize>()]);
        let flat = match (self.how)(&self.path.join(".")) {
            Reduce::Sum => flat,
            Reduce::Mean => flat.mul_scalar(self.scale),
        };
        self.entries.push(Entry {
            id: param.id,
            dims,
            flat,
        });
    }
}

/// Registers the reduced gradients under their parameters, in their shapes.
struct Put {
    reduced: HashMap<ParamId, (Vec<usize>, Tensor<1>)>,
    out: GradientsParams,
}

impl ModuleVisitor for Put {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some((dims, flat)) = self.reduced.remove(&param.id)
            && let Ok(shape) = <[usize; D]>::try_from(dims.as_slice())
        {
            self.out.register::<D>(param.id, flat.reshape(shape));
        }
    }
}
