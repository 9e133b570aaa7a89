//! Host-side f32 tensors and named tensor maps: the common currency between checkpoint
//! readers, the model builder and exporters; `host` copies a device tensor into one.

use burn::tensor::Tensor;
use std::collections::BTreeMap;

/// A dense row-major f32 tensor living in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Builds a tensor, checking that `data` holds exactly `prod(shape)` values.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> anyhow::Result<Self> {
        let n: usize = shape.iter().product();
        anyhow::ensure!(
            n == data.len(),
            "tensor of shape {shape:?} needs {n} values, got {}",
            data.len()
        );
        Ok(Self { shape, data })
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Same values, new shape (element count must match).
    pub fn reshaped(self, shape: Vec<usize>) -> anyhow::Result<Self> {
        Self::new(shape, self.data)
    }

    /// Transposes a 2-D tensor.
    pub fn transposed_2d(&self) -> Self {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        Self {
            shape: vec![c, r],
            data: out,
        }
    }

    /// Largest absolute element-wise difference to `other` (shapes must match).
    pub fn max_abs_diff(&self, other: &HostTensor) -> f32 {
        assert_eq!(self.shape, other.shape, "shape mismatch in max_abs_diff");
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

/// Tensors by name, ordered by name for stable listings.
pub type TensorMap = BTreeMap<String, HostTensor>;

/// Copies a device tensor to the host as f32.
pub fn host<const N: usize>(t: Tensor<N>) -> anyhow::Result<HostTensor> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading tensor back from the device: {e:?}"))?;
    HostTensor::new(shape, data)
}
