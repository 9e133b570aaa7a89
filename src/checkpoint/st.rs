//! safetensors files as [`TensorMap`]s: reading any float/int dtype as f32 with the file's
//! metadata, and writing f32 tensors atomically (temp file + fsync + rename).
//!
//! Untrusted input (issue 14): the `safetensors` crate checks that the header is at most 100 MB,
//! that tensors' byte ranges are contiguous and cover the data exactly and that each range is
//! `prod(shape) × dtype size` bytes (checked arithmetic). This reader adds a clear error for a
//! bad header length before anything is read, the same byte-length check per tensor, and the
//! element cap [`MAX_TENSOR_ELEMENTS`] shared with the torch reader.

use super::torch_zip::MAX_TENSOR_ELEMENTS;
use crate::host::{HostTensor, TensorMap};
use anyhow::{Context, Result, bail, ensure};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Tensors and `__metadata__` of a safetensors file.
pub struct StFile {
    pub tensors: TensorMap,
    pub metadata: HashMap<String, String>,
}

/// True when `bytes` start like a safetensors file (u64 header length, then a JSON object: `{"`
/// or `{}`, or any `{` under a plausible length). An implausible header length is not judged
/// here: [`parse`] says what is wrong with it.
pub fn looks_like(bytes: &[u8]) -> bool {
    if bytes.len() < 10 || bytes[8] != b'{' {
        return false;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    n < (1 << 30) || matches!(bytes[9], b'"' | b'}')
}

/// Largest JSON header accepted: 100 MB, the `safetensors` crate's own limit.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Checks the 8-byte header length `n` of a `file_len`-byte file before the header is read.
fn check_header_len(n: u64, file_len: u64) -> Result<()> {
    ensure!(
        n <= MAX_HEADER_BYTES,
        "header length {n} is more than the {MAX_HEADER_BYTES} bytes a safetensors header may have \
         (corrupt file?)"
    );
    ensure!(
        n.checked_add(8).is_some_and(|end| end <= file_len),
        "header length {n} runs past the end of the {file_len}-byte file (truncated or corrupt)"
    );
    Ok(())
}

/// The safetensors crate's error in words (its `Display` is only the variant's name).
fn explain(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::TensorInvalidInfo => {
            "a tensor's shape × dtype size differs from the bytes its data_offsets span".into()
        }
        E::InvalidOffset(name) => format!(
            "tensor `{name}`: data_offsets overlap, leave a gap or pass the end of the file"
        ),
        E::MetadataIncompleteBuffer => {
            "the tensors' data_offsets do not end where the file ends".into()
        }
        E::ValidationOverflow => "a tensor's shape overflows when multiplied out".into(),
        E::HeaderTooLarge => "the header is larger than 100 MB".into(),
        E::HeaderTooSmall | E::InvalidHeaderLength => {
            "the header length does not fit the file".into()
        }
        E::InvalidHeader | E::InvalidHeaderStart => "the header is not UTF-8 JSON".into(),
        E::InvalidHeaderDeserialization | E::JsonError(_) => {
            format!("the header is not the expected JSON ({e:?})")
        }
        other => format!("{other:?}"),
    }
}

/// Parses safetensors bytes; `path` is only used in error messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<StFile> {
    ensure!(
        bytes.len() >= 8,
        "{}: {} bytes is too short for a safetensors file",
        path.display(),
        bytes.len()
    );
    let n = u64::from_le_bytes(bytes[..8].try_into()?);
    check_header_len(n, bytes.len() as u64).with_context(|| format!("{}", path.display()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid safetensors file (truncated or corrupt?): {}",
            path.display(),
            explain(&e)
        )
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .with_context(|| format!("{}: unreadable safetensors header", path.display()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut tensors = TensorMap::new();
    for (name, view) in st.tensors() {
        let data = decode(view.dtype(), view.shape(), view.data())
            .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        tensors.insert(
            name.to_string(),
            HostTensor::new(view.shape().to_vec(), data)?,
        );
    }
    Ok(StFile { tensors, metadata })
}

/// Reads a safetensors file from disk (its header length is checked before the file is read).
pub fn read(path: &Path) -> Result<StFile> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut head = [0u8; 8];
    f.read_exact(&mut head).with_context(|| {
        format!(
            "{}: {len} bytes is too short for a safetensors file",
            path.display()
        )
    })?;
    check_header_len(u64::from_le_bytes(head), len)
        .with_context(|| format!("{}", path.display()))?;
    drop(f);
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(path, &bytes)
}

/// Decodes one tensor's bytes as f32 after checking its size against its shape and the cap.
fn decode(dtype: Dtype, shape: &[usize], raw: &[u8]) -> Result<Vec<f32>> {
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .with_context(|| format!("shape {shape:?} overflows the element count"))?;
    ensure!(
        numel <= MAX_TENSOR_ELEMENTS,
        "shape {shape:?} has {numel} elements, more than the {MAX_TENSOR_ELEMENTS} a tensor may hold"
    );
    ensure!(
        numel.checked_mul(dtype.size()) == Some(raw.len()),
        "shape {shape:?} of {dtype:?} needs {numel} × {} bytes but the tensor has {} bytes",
        dtype.size(),
        raw.len()
    );
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
        Dtype::I16 => conv!(2, |b| i16::from_le_bytes([b[0], b[1]]) as f32),
        Dtype::U16 => conv!(2, |b| u16::from_le_bytes([b[0], b[1]]) as f32),
        Dtype::U32 => conv!(4, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        Dtype::U64 => conv!(
            8,
            |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32
        ),
        Dtype::I8 => conv!(1, |b| b[0] as i8 as f32),
        Dtype::U8 | Dtype::BOOL => conv!(1, |b| b[0] as f32),
        other => bail!(
            "unsupported dtype {other:?}: store the weights as f32, f16, bf16 or f64 (or an integer type)"
        ),
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

    fn small_file() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut map = TensorMap::new();
        map.insert(
            "w".into(),
            HostTensor::new(vec![2, 3], (0..6).map(|x| x as f32).collect()).unwrap(),
        );
        map.insert("b".into(), HostTensor::new(vec![3], vec![0.5; 3]).unwrap());
        let p = dir.path().join("s.safetensors");
        write(&p, &map, HashMap::from([("num_heads".into(), "2".into())])).unwrap();
        std::fs::read(p).unwrap()
    }

    #[test]
    fn huge_header_length_is_an_error_before_reading() {
        let mut bytes = small_file();
        bytes[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let err = format!(
            "{:#}",
            parse(Path::new("h.safetensors"), &bytes).err().unwrap()
        );
        assert!(
            err.contains("h.safetensors") && err.contains("header length 1152921504606846976"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let err = format!("{:#}", read(&p).err().unwrap());
        assert!(
            err.contains("header length") && err.contains("100000000"),
            "{err}"
        );
        // a header length within the cap but past the end of the file
        bytes[..8].copy_from_slice(&5000u64.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let err = format!("{:#}", read(&p).err().unwrap());
        assert!(err.contains("runs past the end"), "{err}");
        assert!(parse(&p, &[1, 2, 3]).is_err());
    }

    #[test]
    fn tensor_bytes_must_match_shape_and_dtype() {
        let err = decode(Dtype::F32, &[2], &[0u8; 7]).unwrap_err().to_string();
        assert!(
            err.contains("needs 2 × 4 bytes") && err.contains("7 bytes"),
            "{err}"
        );
        assert!(decode(Dtype::F32, &[1 << 40, 1 << 40], &[]).is_err());
        let err = decode(Dtype::U8, &[1 << 32], &[]).unwrap_err().to_string();
        assert!(err.contains("more than the 2147483648"), "{err}");
        assert_eq!(decode(Dtype::I8, &[2], &[0xff, 1]).unwrap(), [-1.0, 1.0]);
        assert_eq!(decode(Dtype::BOOL, &[1], &[1]).unwrap(), [1.0]);
        assert!(decode(Dtype::F8_E4M3, &[1], &[1]).is_err());
    }

    #[test]
    fn mutated_safetensors_give_ok_or_err_without_panicking() {
        let good = small_file();
        assert_eq!(
            parse(Path::new("g"), &good).unwrap().tensors["w"].data[5],
            5.0
        );
        let mut m = crate::data::mutate::Mutator::new(1414);
        let mut errors = 0;
        for _ in 0..500 {
            let bytes = m.mutate(&good);
            if looks_like(&bytes) || bytes.len() >= 8 {
                errors += parse(Path::new("m"), &bytes).is_err() as usize;
            }
        }
        assert!(errors > 100, "{errors}");
    }
}
