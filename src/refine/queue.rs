//! The nearest-neighbour FIFO queue of one head (method.md §3 items 2 and 6): projector
//! outputs with dataset index and label, same-index masking, top-k with a uniform random pick.

use crate::host::{HostTensor, host};
use crate::rng::Rng;
use crate::select::{self, KeyMask};
use anyhow::Result;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// FIFO ring buffer of `size × dim` embeddings as enqueued, with a unit-row copy for lookups.
pub struct NnQueue {
    x: Tensor<2>,
    /// `x` with unit rows, kept in step with it (each lookup would otherwise renormalise all).
    xn: Tensor<2>,
    /// Device copy of `idx` for masking on GPUs (`None` on host devices, which mask on the CPU).
    idx_dev: Option<Tensor<2, Int>>,
    pub idx: Vec<i64>,
    pub label: Vec<i64>,
    pub age: Vec<u64>,
    pub ptr: usize,
}

/// Result of a lookup for one view: the L2-normalised neighbours `[B, dim]` and what was picked.
pub struct Lookup {
    pub nn: Tensor<2>,
    pub picks: Vec<usize>,
}

/// Rows of `x` scaled to unit L2 norm (eps 1e-12, as `F.normalize`).
pub fn l2n(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

impl NnQueue {
    /// A queue initialised with N(0, 1) entries drawn from `rng`, indices and labels −1
    /// (method.md §2).
    pub fn new(size: usize, dim: usize, rng: &mut Rng, device: &Device) -> Self {
        let x: Vec<f32> = (0..size * dim).map(|_| rng.normal() as f32).collect();
        let x = Tensor::from_data(TensorData::new(x, [size, dim]), device);
        Self::from_parts(x, vec![-1; size], vec![-1; size], vec![0; size], 0)
    }

    /// A queue from explicit contents (checkpoint restore, tests).
    pub fn from_parts(
        x: Tensor<2>,
        idx: Vec<i64>,
        label: Vec<i64>,
        age: Vec<u64>,
        ptr: usize,
    ) -> Self {
        let device = x.device();
        let n = idx.len();
        let idx_dev = (!select::host_device(&device))
            .then(|| Tensor::<2, Int>::from_data(TensorData::new(idx.clone(), [1, n]), &device));
        Self {
            xn: l2n(x.clone()),
            x,
            idx_dev,
            idx,
            label,
            age,
            ptr,
        }
    }

    pub fn len(&self) -> usize {
        self.idx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    /// Top-`k` neighbours of each row of `z` (no gradient) among entries whose stored index
    /// differs from the sample's own (`batch_idx`); one of the `k` is picked uniformly.
    pub fn lookup(
        &self,
        z: Tensor<2>,
        batch_idx: &[usize],
        k: usize,
        rng: &mut Rng,
    ) -> Result<Lookup> {
        let device = self.x.device();
        let z = z.without_autodiff().detach();
        let q = self.xn.clone();
        let sim = l2n(z).matmul(q.clone().transpose());
        let [b, n] = sim.dims();
        let own: Vec<i64> = batch_idx.iter().map(|&i| i as i64).collect();
        let k = k.clamp(1, n);
        // on GPUs the stored indices stay on the device, so the mask is applied there
        let top = match &self.idx_dev {
            Some(idx_dev) => {
                let own = Tensor::<2, Int>::from_data(TensorData::new(own, [b, 1]), &device);
                let equal = idx_dev.clone().expand([b, n]).equal(own.expand([b, n]));
                select::top_k(sim.mask_fill(equal, -1.0), k, None)?
            }
            None => {
                let mask = KeyMask {
                    row_keys: &own,
                    col_keys: &self.idx,
                    fill: -1.0,
                };
                select::top_k(sim, k, Some(mask))?
            }
        };
        let picks: Vec<usize> = (0..b).map(|i| top.row_cols(i)[rng.below(k)]).collect();
        let sel = Tensor::<1, Int>::from_data(
            TensorData::new(picks.iter().map(|&p| p as i64).collect::<Vec<_>>(), [b]),
            &device,
        );
        Ok(Lookup {
            nn: q.select(0, sel),
            picks,
        })
    }

    /// Enqueues `z` (projector output of global view 0, `[B, dim]`) at the pointer with
    /// wrap-around; new entries get age 0, then every age grows by B (method.md §3 item 6).
    pub fn enqueue(&mut self, z: Tensor<2>, batch_idx: &[usize], labels: &[i64]) {
        let z = z.without_autodiff().detach();
        let [b, d] = z.dims();
        let n = self.len();
        let mut rows = Vec::with_capacity(b);
        for i in 0..b.min(n) {
            let slot = (self.ptr + i) % n;
            rows.push(slot);
            self.idx[slot] = batch_idx[i] as i64;
            self.label[slot] = labels[i];
            self.age[slot] = 0;
        }
        // write contiguous runs (at most two because of the wrap-around)
        let first = rows.len().min(n - self.ptr);
        let zn = l2n(z.clone());
        let runs = [(self.ptr, 0, first), (0, first, rows.len() - first)];
        for (at, from, len) in runs.into_iter().filter(|r| r.2 > 0) {
            let range = [at..at + len, 0..d];
            // moved out, not cloned: a buffer with one owner is written in place, a shared one
            // is copied whole (65 536 rows) first
            let x = std::mem::replace(&mut self.x, Tensor::empty([0, d], &z.device()));
            self.x = x.slice_assign(range.clone(), z.clone().narrow(0, from, len));
            let xn = std::mem::replace(&mut self.xn, Tensor::empty([0, d], &z.device()));
            self.xn = xn.slice_assign(range, zn.clone().narrow(0, from, len));
            self.upload_idx(at, len);
        }
        self.ptr = (self.ptr + rows.len()) % n;
        self.age.iter_mut().for_each(|a| *a += b as u64);
    }

    /// Copies the stored indices of slots `at..at + len` to the device copy used for masking
    /// on GPUs (nothing on host devices).
    fn upload_idx(&mut self, at: usize, len: usize) {
        if let Some(dev) = self.idx_dev.take() {
            let vals = TensorData::new(self.idx[at..at + len].to_vec(), [1, len]);
            let vals = Tensor::<2, Int>::from_data(vals, &self.x.device());
            self.idx_dev = Some(dev.slice_assign([0..1, at..at + len], vals));
        }
    }

    /// The queue's embeddings on the host (checkpointing).
    pub fn host_x(&self) -> Result<HostTensor> {
        host(self.x.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> NnQueue {
        // 6 entries on the unit circle-ish; entry i at angle i·10°, stored index 100 + i
        let d = Device::flex();
        let x: Vec<f32> = (0..6)
            .flat_map(|i| {
                let a = (i as f32 * 10.0).to_radians();
                [a.cos(), a.sin()]
            })
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [6, 2]), &d);
        NnQueue::from_parts(x, (100..106).collect(), vec![0; 6], vec![0; 6], 0)
    }

    #[test]
    fn top_k_pick_is_uniform_over_the_k_nearest_unmasked_entries() {
        let q = queue();
        let z = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &Device::flex());
        let mut counts = [0usize; 6];
        let mut rng = Rng::new(3);
        for _ in 0..3000 {
            let l = q.lookup(z.clone(), &[100], 3, &mut rng).unwrap();
            counts[l.picks[0]] += 1;
        }
        // entry 0 (same dataset index 100) is masked; the 3 nearest others are 1, 2, 3
        assert_eq!(counts[0], 0);
        assert_eq!(counts[4] + counts[5], 0);
        for c in &counts[1..4] {
            assert!((*c as f64 - 1000.0).abs() < 100.0, "{counts:?}");
        }
    }

    #[test]
    fn fifo_wraps_around_and_ages_grow() {
        let mut q = queue();
        q.ptr = 5;
        let z = Tensor::<2>::from_data(
            TensorData::new(vec![9.0f32, 9.0, 8.0, 8.0], [2, 2]),
            &Device::flex(),
        );
        q.enqueue(z, &[7, 8], &[1, 2]);
        assert_eq!(q.ptr, 1);
        assert_eq!((q.idx[5], q.idx[0]), (7, 8));
        assert_eq!(q.age, vec![2, 2, 2, 2, 2, 2]);
        let x = q.host_x().unwrap().data;
        assert_eq!((x[10], x[0]), (9.0, 8.0));
    }
}
