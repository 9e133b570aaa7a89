//! Reader of `torch.save` zip archives (`.pth`, `.pt`, `.th`): `<archive>/data.pkl` plus one
//! raw little-endian record per storage under `<archive>/data/<key>` (method.md §6.5).
//!
//! Untrusted input (issue 14): every size in the file is checked before it drives an allocation.
//! Zip entries are read through a cap ([`entry_cap`]) instead of trusting their header's size,
//! shapes/strides/offsets use checked arithmetic, a view must fit its storage and
//! [`MAX_TENSOR_ELEMENTS`], and each storage is decoded once however many tensors view it.

use super::pickle::{self, StorageDtype, TensorRef, Value};
use crate::host::{HostTensor, TensorMap};
use anyhow::{Context, Result, bail, ensure};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest tensor or storage, in elements, any checkpoint reader builds: 2^31 values (8 GiB as
/// f32), far above the largest ViT weight matrix. A view may repeat storage elements (stride 0,
/// torch's `expand`), so a tiny storage can declare a huge tensor: its element count must pass
/// this cap before anything is allocated.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 31;
/// Largest sum of tensor elements read from one checkpoint: 2^32 values (16 GiB as f32).
pub const MAX_TOTAL_ELEMENTS: u64 = 1 << 32;
/// A checkpoint's tensors may hold at most this many elements per byte of the archive (at
/// least [`MIN_ELEMENT_BUDGET`], at most [`MAX_TOTAL_ELEMENTS`]): a 200 KB file cannot make the
/// reader allocate gigabytes through repeated (stride-0) or duplicated views. Real checkpoints
/// hold at most one f32 element per 4 bytes (×[`MAX_DEFLATE_RATIO`] when repacked compressed).
pub const ELEMENTS_PER_ARCHIVE_BYTE: u64 = 64;
/// The element budget of a small archive: 2^24 elements (64 MiB as f32).
pub const MIN_ELEMENT_BUDGET: u64 = 1 << 24;
/// Largest zip entry read, decompressed: 16 GiB.
pub const MAX_ENTRY_BYTES: u64 = 16 << 30;
/// A compressed (deflated) entry may expand to at most this multiple of its compressed size.
/// `torch.save` stores entries uncompressed; deflated ones come from repacking, where real
/// weights compress by well under 64×, while a zip bomb expands ~1000×.
pub const MAX_DEFLATE_RATIO: u64 = 64;
/// …but a compressed entry may always expand to this much (small all-zero tensors such as
/// biases compress ~1000×).
pub const DEFLATE_FLOOR_BYTES: u64 = 1 << 20;

/// The most bytes an entry may decompress to: a stored entry cannot hold more than the archive
/// itself; a compressed one at most [`MAX_DEFLATE_RATIO`] × its compressed size (at least
/// [`DEFLATE_FLOOR_BYTES`]); never more than [`MAX_ENTRY_BYTES`].
pub fn entry_cap(compression: zip::CompressionMethod, compressed: u64, archive_len: u64) -> u64 {
    let cap = if compression == zip::CompressionMethod::Stored {
        archive_len
    } else {
        compressed
            .min(archive_len)
            .saturating_mul(MAX_DEFLATE_RATIO)
            .max(DEFLATE_FLOOR_BYTES)
    };
    cap.min(MAX_ENTRY_BYTES)
}

/// An opened torch zip checkpoint: the unpickled object tree and access to storages.
pub struct TorchArchive {
    path: PathBuf,
    zip: zip::ZipArchive<std::io::Cursor<Vec<u8>>>,
    archive_len: u64,
    prefix: String,
    pub root: Value,
    /// The last decoded storage (key, dtype, values): views of one storage are materialised
    /// together ([`Self::tensors_of`] groups them), so each storage is decoded once.
    cache: Option<(String, StorageDtype, Arc<Vec<f32>>)>,
    /// How many storages were read and decoded (the cache's effect is testable).
    storages_decoded: usize,
}

/// Reads zip entry `name` in full, but never more than [`entry_cap`] bytes whatever its header
/// claims; more is an error.
fn read_entry(
    zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>,
    name: &str,
    archive_len: u64,
) -> Result<Vec<u8>> {
    let f = zip.by_name(name)?;
    let cap = entry_cap(f.compression(), f.compressed_size(), archive_len);
    let compressed = f.compressed_size();
    let mut buf = Vec::new();
    f.take(cap.saturating_add(1)).read_to_end(&mut buf)?;
    ensure!(
        (buf.len() as u64) <= cap,
        "{name} decompresses to more than {cap} bytes from {compressed} compressed bytes \
         (a zip bomb or a corrupt archive)"
    );
    Ok(buf)
}

impl TorchArchive {
    /// Opens and unpickles `path`; errors name the file and what is wrong with it.
    pub fn open(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let archive_len = bytes.len() as u64;
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
        let buf = read_entry(&mut zip, &pkl, archive_len)
            .with_context(|| format!("{}: cannot read {pkl} (corrupt archive?)", path.display()))?;
        let root = pickle::parse(&buf)
            .with_context(|| format!("{}: cannot unpickle {pkl}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            zip,
            archive_len,
            prefix,
            root,
            cache: None,
            storages_decoded: 0,
        })
    }

    /// The most tensor elements this archive may materialise in all (see
    /// [`ELEMENTS_PER_ARCHIVE_BYTE`]).
    pub fn element_budget(&self) -> u64 {
        self.archive_len
            .saturating_mul(ELEMENTS_PER_ARCHIVE_BYTE)
            .clamp(MIN_ELEMENT_BUDGET, MAX_TOTAL_ELEMENTS)
    }

    /// The values of storage `key` read as `dtype`, decoded once while it stays the cached one.
    fn storage(&mut self, key: &str, dtype: StorageDtype) -> Result<Arc<Vec<f32>>> {
        if let Some((k, d, values)) = &self.cache
            && k == key
            && *d == dtype
        {
            return Ok(values.clone());
        }
        self.cache = None; // free the previous storage before reading the next
        let entry = format!("{}data/{key}", self.prefix);
        let raw = read_entry(&mut self.zip, &entry, self.archive_len)
            .with_context(|| format!("storage {entry} missing or corrupt"))?;
        let values = Arc::new(decode(&raw, dtype).with_context(|| format!("storage {entry}"))?);
        self.storages_decoded += 1;
        self.cache = Some((key.to_string(), dtype, values.clone()));
        Ok(values)
    }

    /// Reads one storage record (or reuses the cached one) and gathers the (possibly strided)
    /// tensor view as f32.
    pub fn materialize(&mut self, name: &str, t: &TensorRef) -> Result<HostTensor> {
        let label = format!("{}: tensor `{name}`", self.path.display());
        let what = || label.clone();
        // check the view's arithmetic before reading anything
        view_extent(t).with_context(|| {
            format!(
                "{}: view {:?} (stride {:?}, offset {}) is invalid (corrupt file?)",
                what(),
                t.shape,
                t.stride,
                t.offset
            )
        })?;
        let storage = self.storage(&t.storage_key, t.dtype).with_context(what)?;
        let data = gather(&storage, t).with_context(|| {
            format!("{}: view does not fit its storage (corrupt file?)", what())
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
        // the whole file's tensors must fit the budget before the first one is built
        let mut total = 0u64;
        for (name, t) in &refs {
            let (numel, _) = view_extent(t).with_context(|| {
                format!(
                    "{}: tensor `{name}`: view {:?} (stride {:?}, offset {}) is invalid (corrupt file?)",
                    self.path.display(),
                    t.shape,
                    t.stride,
                    t.offset
                )
            })?;
            total = total.saturating_add(numel as u64);
        }
        let budget = self.element_budget();
        ensure!(
            total <= budget,
            "{}: `{what}` declares {total} tensor elements in all, more than the {budget} a \
             {}-byte checkpoint may hold even decompressed (corrupt file or a zip bomb?)",
            self.path.display(),
            self.archive_len
        );
        // views of one storage together: each storage is decoded once (stable: file order within)
        refs.sort_by(|a, b| a.1.storage_key.cmp(&b.1.storage_key));
        let mut out = TensorMap::new();
        let result = refs.into_iter().try_for_each(|(name, t)| {
            let ht = self.materialize(&name, &t)?;
            out.insert(name, ht);
            Ok::<_, anyhow::Error>(())
        });
        self.cache = None;
        result.map(|()| out)
    }
}

/// Decodes a whole storage record as f32; its length must be a whole number of elements.
fn decode(raw: &[u8], dtype: StorageDtype) -> Result<Vec<f32>> {
    let size = dtype.size();
    ensure!(
        raw.len().is_multiple_of(size),
        "{} bytes is not a whole number of {dtype:?} elements ({size} bytes each): truncated or corrupt",
        raw.len()
    );
    let n = raw.len() / size;
    ensure!(
        n <= MAX_TENSOR_ELEMENTS,
        "{n} elements is more than the {MAX_TENSOR_ELEMENTS} a storage may hold"
    );
    let chunks = raw.chunks_exact(size);
    Ok(match dtype {
        StorageDtype::F32 => chunks
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        StorageDtype::F64 => chunks
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        StorageDtype::F16 => chunks
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StorageDtype::BF16 => chunks
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StorageDtype::I64 => chunks
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        StorageDtype::I32 => chunks
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        StorageDtype::I16 => chunks
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
            .collect(),
        StorageDtype::I8 => raw.iter().map(|&b| b as i8 as f32).collect(),
        StorageDtype::U8 | StorageDtype::Bool => raw.iter().map(|&b| b as f32).collect(),
    })
}

/// Element count of view `t` and one past the largest storage element it reads (0 when empty),
/// with checked arithmetic; an error when the count exceeds [`MAX_TENSOR_ELEMENTS`].
fn view_extent(t: &TensorRef) -> Result<(usize, usize)> {
    ensure!(
        t.shape.len() == t.stride.len(),
        "shape {:?} and stride {:?} have different ranks",
        t.shape,
        t.stride
    );
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .with_context(|| format!("shape {:?} overflows the element count", t.shape))?;
    ensure!(
        numel <= MAX_TENSOR_ELEMENTS,
        "shape {:?} has {numel} elements, more than the {MAX_TENSOR_ELEMENTS} a tensor may hold",
        t.shape
    );
    if numel == 0 {
        return Ok((0, 0));
    }
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&s, &st)| {
            (s - 1).checked_mul(st).and_then(|x| acc.checked_add(x))
        })
        .with_context(|| {
            format!(
                "shape {:?} with stride {:?} and offset {} overflows",
                t.shape, t.stride, t.offset
            )
        })?;
    let end = last.checked_add(1).context("view end overflows")?;
    Ok((numel, end))
}

/// Copies the strided view `t` out of `storage` in row-major order; the view is checked against
/// the storage and [`MAX_TENSOR_ELEMENTS`] before the output is allocated.
fn gather(storage: &[f32], t: &TensorRef) -> Result<Vec<f32>> {
    let (numel, end) = view_extent(t)?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    ensure!(
        end <= storage.len(),
        "needs element {} but the storage holds {}",
        end - 1,
        storage.len()
    );
    // every offset below is at most `end - 1`, so no arithmetic here can overflow
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
    use std::io::Write;
    use zip::CompressionMethod::{Deflated, Stored};

    fn view(key: &str, offset: usize, shape: &[usize], stride: &[usize]) -> TensorRef {
        TensorRef {
            storage_key: key.into(),
            dtype: StorageDtype::F32,
            offset,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
        }
    }

    /// A zip archive `ck/…` holding `entries` (name below `ck/`, bytes, compression).
    fn zip_bytes(entries: &[(&str, &[u8], zip::CompressionMethod)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes, method) in entries {
            let opts = zip::write::SimpleFileOptions::default().compression_method(*method);
            w.start_file(format!("ck/{name}"), opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// An archive whose data.pkl is an empty dict, plus the given storages.
    fn archive(storages: &[(&str, &[u8], zip::CompressionMethod)]) -> TorchArchive {
        let mut entries = vec![("data.pkl", &b"\x80\x02}q\x00."[..], Stored)];
        entries.extend(storages.iter().map(|&(k, b, m)| (k, b, m)));
        TorchArchive::open(Path::new("test.pth"), zip_bytes(&entries)).unwrap()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn dict(items: Vec<(&str, TensorRef)>) -> Value {
        Value::Dict(
            items
                .into_iter()
                .map(|(k, t)| (Value::Str(k.into()), Value::Tensor(t)))
                .collect(),
        )
    }

    #[test]
    fn gather_handles_offset_and_transposed_strides() {
        let storage: Vec<f32> = (0..10).map(|x| x as f32).collect();
        // rows i, cols j -> storage[1 + i + 3j]
        assert_eq!(
            gather(&storage, &view("0", 1, &[3, 2], &[1, 3])).unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        // stride 0 (torch's expand) is legal
        assert_eq!(
            gather(&storage, &view("0", 2, &[2, 3], &[0, 1])).unwrap(),
            vec![2.0, 3.0, 4.0, 2.0, 3.0, 4.0]
        );
    }

    #[test]
    fn gather_rejects_view_past_storage_end() {
        assert!(gather(&[0.0; 4], &view("0", 2, &[3], &[1])).is_err());
    }

    #[test]
    fn huge_stride0_view_of_a_tiny_storage_is_an_error_before_allocating() {
        // 2^40 elements of one 4-byte storage: Vec::with_capacity would abort the process
        let t = view("0", 0, &[1 << 20, 1 << 20], &[0, 0]);
        let err = format!("{:#}", gather(&[1.0], &t).unwrap_err());
        assert!(err.contains("1099511627776 elements"), "{err}");
        let mut ar = archive(&[("data/0", &f32_bytes(&[1.0]), Stored)]);
        let err = format!(
            "{:#}",
            ar.tensors_of(&dict(vec![("w", t)]), "model").unwrap_err()
        );
        assert!(
            err.contains("tensor `w`") && err.contains("test.pth"),
            "{err}"
        );
        assert_eq!(ar.storages_decoded, 0, "nothing read for an invalid view");
        // within the per-tensor cap but far beyond what a tiny file may expand to
        let t = view("0", 0, &[1 << 26], &[0]);
        let err = format!(
            "{:#}",
            ar.tensors_of(&dict(vec![("w", t)]), "model").unwrap_err()
        );
        assert!(err.contains("67108864 tensor elements"), "{err}");
        assert_eq!(ar.storages_decoded, 0);
    }

    #[test]
    fn overflowing_shape_stride_or_offset_is_an_error() {
        let storage = [0.0; 8];
        for t in [
            view("0", 0, &[3, 2], &[usize::MAX / 2, 1]),
            view("0", usize::MAX, &[2], &[1]),
            view("0", usize::MAX, &[1], &[1]),
            view("0", 0, &[1 << 40, 1 << 40], &[1, 1]),
            view("0", 0, &[2], &[1, 1]),
        ] {
            let err = format!("{:#}", gather(&storage, &t).unwrap_err());
            assert!(
                err.contains("overflow") || err.contains("ranks"),
                "{t:?}: {err}"
            );
        }
    }

    #[test]
    fn deflated_storage_expanding_past_the_cap_is_an_error() {
        // 4 MiB of zeros deflate to ~4 KiB: far more than 64x, and above the 1 MiB floor
        let zeros = vec![0u8; 4 << 20];
        let mut ar = archive(&[("data/0", &zeros, Deflated)]);
        let t = dict(vec![("w", view("0", 0, &[4], &[1]))]);
        let err = format!("{:#}", ar.tensors_of(&t, "model").unwrap_err());
        assert!(
            err.contains("zip bomb") && err.contains("ck/data/0"),
            "{err}"
        );
        // a modest compressed entry reads fine
        let small = f32_bytes(&[0.0; 1000]);
        let mut ar = archive(&[("data/0", &small, Deflated)]);
        let got = ar.tensors_of(&t, "model").unwrap();
        assert_eq!(got["w"].data, vec![0.0; 4]);
        // a compressed data.pkl bomb fails at open
        let mut pkl = b"\x80\x02}q\x00.".to_vec();
        pkl.resize(4 << 20, 0);
        let bytes = zip_bytes(&[("data.pkl", &pkl, Deflated)]);
        let err = format!(
            "{:#}",
            TorchArchive::open(Path::new("bomb.pth"), bytes)
                .err()
                .unwrap()
        );
        assert!(
            err.contains("bomb.pth") && err.contains("zip bomb"),
            "{err}"
        );
    }

    #[test]
    fn entry_caps() {
        assert_eq!(entry_cap(Stored, 10, 1000), 1000);
        assert_eq!(entry_cap(Deflated, 10, 1000), DEFLATE_FLOOR_BYTES);
        assert_eq!(entry_cap(Deflated, 1 << 30, 1 << 30), 64 << 30 >> 2);
        assert_eq!(entry_cap(Deflated, u64::MAX, u64::MAX), MAX_ENTRY_BYTES);
    }

    #[test]
    fn views_of_one_storage_decode_it_once() {
        let values: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let mut ar = archive(&[
            ("data/0", &f32_bytes(&values), Stored),
            ("data/1", &f32_bytes(&[7.0, 8.0]), Stored),
        ]);
        // dict order interleaves the storages: grouping still reads each once
        let d = dict(vec![
            ("q", view("0", 0, &[2, 2], &[2, 1])),
            ("other", view("1", 0, &[2], &[1])),
            ("k", view("0", 4, &[2, 2], &[1, 2])),
            ("v", view("0", 8, &[4], &[1])),
        ]);
        let got = ar.tensors_of(&d, "model").unwrap();
        assert_eq!(ar.storages_decoded, 2);
        assert_eq!(got["q"].data, [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(got["k"].data, [4.0, 6.0, 5.0, 7.0]);
        assert_eq!(got["v"].data, [8.0, 9.0, 10.0, 11.0]);
        assert_eq!(got["other"].data, [7.0, 8.0]);
        assert!(ar.cache.is_none(), "the last storage is freed");
    }

    #[test]
    fn storage_with_a_partial_element_is_an_error() {
        let err = decode(&[0u8; 7], StorageDtype::F32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("7 bytes") && err.contains("F32"), "{err}");
        assert_eq!(decode(&[0u8; 8], StorageDtype::F32).unwrap(), [0.0, 0.0]);
        assert!(decode(&[0u8; 7], StorageDtype::F64).is_err());
        assert!(decode(&[0u8; 3], StorageDtype::BF16).is_err());
        assert_eq!(decode(&[0xff; 3], StorageDtype::I8).unwrap(), [-1.0; 3]);
        let mut ar = archive(&[("data/0", &[0u8; 7], Stored)]);
        let err = format!(
            "{:#}",
            ar.tensors_of(&dict(vec![("w", view("0", 0, &[1], &[1]))]), "model")
                .unwrap_err()
        );
        assert!(
            err.contains("test.pth") && err.contains("whole number"),
            "{err}"
        );
    }

    /// Replaces the bytes of entry `name` in a zip, keeping the others (stored).
    fn rezip(bytes: &[u8], name: &str, new: &[u8]) -> Vec<u8> {
        let mut r = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for i in 0..r.len() {
            let mut f = r.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            let n = f.name().to_string();
            w.start_file(
                n.as_str(),
                zip::write::SimpleFileOptions::default().compression_method(Stored),
            )
            .unwrap();
            w.write_all(if n == name { new } else { &data }).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn load_all(bytes: Vec<u8>) -> Result<usize> {
        let mut ar = TorchArchive::open(Path::new("m.pth"), bytes)?;
        let root = ar.root.clone();
        let dict = root.get("model").cloned().unwrap_or(root);
        Ok(ar.tensors_of(&dict, "model")?.len())
    }

    #[test]
    fn mutated_torch_zips_give_ok_or_err_without_panicking() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mae_prenorm.pth"
        );
        let good = std::fs::read(path).unwrap();
        assert!(load_all(good.clone()).unwrap() > 10);
        let pkl = {
            let mut r = zip::ZipArchive::new(std::io::Cursor::new(good.as_slice())).unwrap();
            let mut f = r.by_name("mae_prenorm/data.pkl").unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            b
        };
        let mut m = crate::data::mutate::Mutator::new(14);
        let (mut ok, mut err) = (0, 0);
        for i in 0..500 {
            // half the cases mutate the archive, half the pickle (shapes, strides, offsets, keys)
            let bytes = if i % 2 == 0 {
                m.mutate(&good)
            } else {
                rezip(&good, "mae_prenorm/data.pkl", &m.mutate(&pkl))
            };
            match load_all(bytes) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
        assert!(
            err > 100,
            "{ok} ok, {err} errors: the mutations should break most files"
        );
    }
}
