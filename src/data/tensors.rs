//! Host batches → Burn tensors per view group: all global views stacked view-major into one
//! `[G·B, 3, S, S]` tensor and all local views into `[L·B, 3, s, s]` (method.md §4.1).

use super::loader::Batch;
use burn::tensor::{Device, Tensor, TensorData};

/// A batch on the device; row `v·B + b` of each tensor is view `v` of sample `b`.
pub struct DeviceBatch {
    pub globals: Tensor<4>,
    pub locals: Option<Tensor<4>>,
    pub indices: Vec<usize>,
    pub labels: Vec<i64>,
}

impl Batch {
    /// Uploads the views to `device` (globals stacked, locals stacked).
    pub fn to_device(&self, device: &Device) -> DeviceBatch {
        let b = self.len();
        let (gs, ls) = (self.global_size, self.local_size);
        let globals: Vec<f32> = self.globals.concat();
        let g = self.globals.len();
        let globals = Tensor::from_data(TensorData::new(globals, [g * b, 3, gs, gs]), device);
        let n_local = if ls == 0 {
            0
        } else {
            self.locals.len() / (b * 3 * ls * ls)
        };
        let locals = (n_local > 0).then(|| {
            Tensor::from_data(
                TensorData::new(self.locals.clone(), [n_local * b, 3, ls, ls]),
                device,
            )
        });
        DeviceBatch {
            globals,
            locals,
            indices: self.indices.clone(),
            labels: self.labels.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_stacked_view_major() {
        let (b, s) = (2, 2);
        let plane = 3 * s * s;
        let view =
            |v: usize| -> Vec<f32> { (0..b * plane).map(|i| (v * 1000 + i) as f32).collect() };
        let batch = Batch {
            indices: vec![7, 9],
            labels: vec![1, -1],
            globals: vec![view(0), view(1)],
            locals: [view(2), view(3), view(4)].concat(),
            global_size: s,
            local_size: s,
            skipped: 0,
        };
        let d = batch.to_device(&Device::flex());
        assert_eq!(d.globals.dims(), [4, 3, 2, 2]);
        let locals = d.locals.expect("locals");
        assert_eq!(locals.dims(), [6, 3, 2, 2]);
        let g = crate::host::host(d.globals).expect("host");
        // row v·B + b: view 1, sample 1 starts at 1000 + plane
        assert_eq!(g.data[3 * plane], (1000 + plane) as f32);
        let l = crate::host::host(locals).expect("host");
        assert_eq!(l.data[4 * plane], 4000.0);
    }
}
