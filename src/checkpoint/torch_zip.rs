//! Reader of `torch.save` zip archives (`.pth`, `.pt`, `.th`): `<archive>/data.pkl` plus one
//! raw little-endian record per storage under `<archive>/data/<key>` (method.md §6.5).

use super::pickle::{self, StorageDtype, TensorRef, Value};
use crate::host::{HostTensor, TensorMap};
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};

/// An opened torch zip checkpoint: the unpickled object tree and access to storages.
pub struct TorchArchive {
    path: PathBuf,
    zip: zip::ZipArchive<std::io::Cursor<Vec<u8>>>,
    prefix: String,
    pub root: Value,
}

impl TorchArchive {
    /// Opens and unpickles `path`; errors name the file and what is wrong with it.
    pub fn open(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).with_context(|| {
            format!(
                "{}: not a readable torch zip archive (truncated or corrupt file?)",
                path.display()
            )
        })?;
        let pkl = (0..zip.len())
            .filter_map(|i| zip.name_for_index(i).map(str::to_string))
            .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
            .with_context(|| {
                format!(
                    "{}: zip archive has no data.pkl: not a torch.save file",
                    path.display()
                )
            })?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let mut buf = Vec::new();
        zip.by_name(&pkl)
            .and_then(|mut f| f.read_to_end(&mut buf).map_err(Into::into))
            .with_context(|| format!("{}: cannot read {pkl} (corrupt archive?)", path.display()))?;
        let root = pickle::parse(&buf)
            .with_context(|| format!("{}: cannot unpickle {pkl}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            zip,
            prefix,
            root,
        })
    }

    /// Reads one storage record and gathers the (possibly strided) tensor view as f32.
    pub fn materialize(&mut self, name: &str, t: &TensorRef) -> Result<HostTensor> {
        let entry = format!("{}data/{}", self.prefix, t.storage_key);
        let mut raw = Vec::new();
        self.zip
            .by_name(&entry)
            .and_then(|mut f| f.read_to_end(&mut raw).map_err(Into::into))
            .with_context(|| {
                format!(
                    "{}: tensor `{name}`: storage {entry} missing or corrupt",
                    self.path.display()
                )
            })?;
        let values = decode(&raw, t.dtype);
        let data = gather(&values, t).with_context(|| {
            format!(
                "{}: tensor `{name}`: view does not fit its storage (corrupt file?)",
                self.path.display()
            )
        })?;
        HostTensor::new(t.shape.clone(), data)
    }

    /// Materialises every tensor of a `{name: tensor}` dict. Values that are stubs of classes
    /// this reader does not load are an error naming the class; other plain values are skipped.
    pub fn tensors_of(&mut self, dict: &Value, what: &str) -> Result<TensorMap> {
        let Value::Dict(items) = dict else {
            bail!(
                "{}: `{what}` is a {}, expected a dict of tensors",
                self.path.display(),
                dict.kind()
            )
        };
        let mut refs = Vec::new();
        for (k, v) in items {
            let Value::Str(name) = k else { continue };
            match v {
                Value::Tensor(t) => refs.push((name.clone(), t.clone())),
                Value::Object(class) | Value::Global(class) => bail!(
                    "{}: `{what}` entry `{name}` is an instance of the unsupported pickle global `{class}`; \
                     mimr loads tensors and plain containers only and never runs pickled code \
                     (convert the file to safetensors with PyTorch)",
                    self.path.display()
                ),
                _ => {}
            }
        }
        let mut out = TensorMap::new();
        for (name, t) in refs {
            let ht = self.materialize(&name, &t)?;
            out.insert(name, ht);
        }
        Ok(out)
    }
}

fn decode(raw: &[u8], dtype: StorageDtype) -> Vec<f32> {
    let n = raw.len() / dtype.size();
    let chunk = |i: usize| &raw[i * dtype.size()..(i + 1) * dtype.size()];
    (0..n)
        .map(|i| {
            let b = chunk(i);
            match dtype {
                StorageDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                StorageDtype::F64 => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
                StorageDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                StorageDtype::I64 => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32,
                StorageDtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                StorageDtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
                StorageDtype::I8 => b[0] as i8 as f32,
                StorageDtype::U8 | StorageDtype::Bool => b[0] as f32,
            }
        })
        .collect()
}

/// Copies the strided view `t` out of `storage` in row-major order.
fn gather(storage: &[f32], t: &TensorRef) -> Result<Vec<f32>> {
    anyhow::ensure!(
        t.shape.len() == t.stride.len(),
        "shape/stride rank mismatch"
    );
    let numel: usize = t.shape.iter().product();
    if numel == 0 {
        return Ok(Vec::new());
    }
    let max_index = t.offset
        + t.shape
            .iter()
            .zip(&t.stride)
            .map(|(s, st)| (s - 1) * st)
            .sum::<usize>();
    anyhow::ensure!(
        max_index < storage.len(),
        "needs element {max_index} but the storage holds {}",
        storage.len()
    );
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(storage[off]);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_handles_offset_and_transposed_strides() {
        let storage: Vec<f32> = (0..10).map(|x| x as f32).collect();
        let t = TensorRef {
            storage_key: "0".into(),
            dtype: StorageDtype::F32,
            offset: 1,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        // rows i, cols j -> storage[1 + i + 3j]
        assert_eq!(
            gather(&storage, &t).unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn gather_rejects_view_past_storage_end() {
        let storage = vec![0.0; 4];
        let t = TensorRef {
            storage_key: "0".into(),
            dtype: StorageDtype::F32,
            offset: 2,
            shape: vec![3],
            stride: vec![1],
        };
        assert!(gather(&storage, &t).is_err());
    }
}
