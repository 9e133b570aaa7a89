//! safetensors files as [`TensorMap`]s: reading any float/int dtype as f32 with the file's
//! metadata, and writing f32 tensors atomically (temp file + fsync + rename).

use crate::host::{HostTensor, TensorMap};
use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Tensors and `__metadata__` of a safetensors file.
pub struct StFile {
    pub tensors: TensorMap,
    pub metadata: HashMap<String, String>,
}

/// True when `bytes` start like a safetensors file (u64 header length, then a JSON object).
pub fn looks_like(bytes: &[u8]) -> bool {
    if bytes.len() < 10 {
        return false;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    bytes[8] == b'{' && n < (1 << 30)
}

/// Parses safetensors bytes; `path` is only used in error messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<StFile> {
    let st = SafeTensors::deserialize(bytes).with_context(|| {
        format!(
            "{}: not a valid safetensors file (truncated or corrupt?)",
            path.display()
        )
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .with_context(|| format!("{}: unreadable safetensors header", path.display()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut tensors = TensorMap::new();
    for (name, view) in st.tensors() {
        let data = decode(view.dtype(), view.data())
            .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        tensors.insert(
            name.to_string(),
            HostTensor::new(view.shape().to_vec(), data)?,
        );
    }
    Ok(StFile { tensors, metadata })
}

/// Reads a safetensors file from disk.
pub fn read(path: &Path) -> Result<StFile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(path, &bytes)
}

fn decode(dtype: Dtype, raw: &[u8]) -> Result<Vec<f32>> {
    macro_rules! conv {
        ($n:expr, $f:expr) => {
            raw.chunks_exact($n).map($f).collect()
        };
    }
    Ok(match dtype {
        Dtype::F32 => conv!(4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::F64 => conv!(
            8,
            |b: &[u8]| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32
        ),
        Dtype::F16 => conv!(2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        Dtype::BF16 => conv!(2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        Dtype::I64 => conv!(
            8,
            |b: &[u8]| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32
        ),
        Dtype::I32 => conv!(4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        Dtype::U8 => conv!(1, |b| b[0] as f32),
        other => bail!("unsupported dtype {other:?}: store the weights as f32, f16, bf16 or f64"),
    })
}

/// Writes f32 tensors with metadata to `path` atomically: a reader never sees a partial file.
pub fn write(path: &Path, tensors: &TensorMap, metadata: HashMap<String, String>) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, s)| {
            Ok((
                k.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let mut out = safetensors::serialize(views, &Some(metadata))?;
    sort_header(&mut out)?;
    crate::fsutil::write_atomic(path, &out)
}

/// Rewrites a serialized file's JSON header with its keys sorted (the `safetensors` crate writes
/// `__metadata__` in hash-map order): the same tensors and metadata always give the same bytes.
/// The sorted header has the same length (same compact JSON, keys reordered).
fn sort_header(file: &mut [u8]) -> Result<()> {
    let n = u64::from_le_bytes(file[..8].try_into()?) as usize;
    let header = &file[8..8 + n];
    let text = std::str::from_utf8(header)?;
    let trimmed = text.trim_end_matches(' ');
    // serde_json's Map is a BTreeMap in this build (no `preserve_order`): keys come out sorted
    let value: serde_json::Value = serde_json::from_str(trimmed)?;
    let sorted = serde_json::to_string(&value)?;
    anyhow::ensure!(
        sorted.len() == trimmed.len(),
        "safetensors header changed length when sorted"
    );
    file[8..8 + sorted.len()].copy_from_slice(sorted.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_text(bytes: &[u8]) -> String {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        String::from_utf8(bytes[8..8 + n].to_vec()).unwrap()
    }

    #[test]
    fn identical_content_gives_identical_bytes_with_sorted_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = TensorMap::new();
        map.insert(
            "b".into(),
            HostTensor::new(vec![2], vec![1.0, 2.0]).unwrap(),
        );
        map.insert(
            "a".into(),
            HostTensor::new(vec![1, 3], vec![3.0; 3]).unwrap(),
        );
        let keys: Vec<String> = (0..16).map(|i| format!("key{i:02}")).collect();
        let meta = |order: &mut dyn Iterator<Item = &String>| {
            order
                .map(|k| (k.clone(), format!("v-{k}")))
                .collect::<HashMap<_, _>>()
        };
        let (p1, p2) = (dir.path().join("1.st"), dir.path().join("2.st"));
        write(&p1, &map, meta(&mut keys.iter())).unwrap();
        write(&p2, &map, meta(&mut keys.iter().rev())).unwrap();
        let (b1, b2) = (std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
        assert_eq!(b1, b2);
        let text = header_text(&b1);
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "metadata not sorted: {text}"
        );
        let back = read(&p1).unwrap();
        assert_eq!(back.metadata.len(), 16);
        assert_eq!(back.metadata["key07"], "v-key07");
        assert_eq!(back.tensors["a"].data, vec![3.0; 3]);
    }
}
