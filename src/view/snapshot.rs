//! A probe-subset snapshot file as the viewer uses it: features `[n, dim]` per tensor (a head, or
//! `block.<i>` for every block), the rows' labels and dataset indices. Parsed without burn.

use super::project::Features;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};

/// Widest features accepted (ViT-6.5B is 4096 wide): PCA holds a dim × dim matrix, so a small
/// file must not be able to ask for an enormous one.
pub const MAX_DIM: usize = 8192;

/// Tensor names that hold per-row facts rather than features.
const ROW_TENSORS: [&str; 2] = ["labels", "index"];

/// One snapshot's contents.
pub struct SnapshotData {
    /// Features by tensor name (head names such as `cls11`, or `block.<i>`, `final`).
    pub features: BTreeMap<String, Features>,
    /// Each row's label (`None` when unlabelled).
    pub labels: Vec<Option<u32>>,
    /// Each row's dataset index.
    pub index: Vec<usize>,
    /// Row of each dataset index.
    rows: HashMap<usize, usize>,
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&String> = self.features.keys().collect();
        write!(f, "SnapshotData({} rows, {names:?})", self.len())
    }
}

impl SnapshotData {
    /// Parses a snapshot file's bytes; `name` is used in messages.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, String> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("{name}: not a valid safetensors file ({e})"))?;
        let row_vec = |key: &str| -> Result<Vec<f32>, String> {
            let t = st
                .tensor(key)
                .map_err(|_| format!("{name}: no `{key}` tensor (not a mimr snapshot?)"))?;
            floats(name, key, t.dtype(), t.data())
        };
        let index = indices(name, &row_vec("index")?)?;
        let labels: Vec<Option<u32>> = row_vec("labels")?
            .iter()
            .map(|&v| (v >= 0.0).then_some(v as u32))
            .collect();
        let n = index.len();
        if labels.len() != n {
            return Err(format!(
                "{name}: {} labels for {n} rows (`index`)",
                labels.len()
            ));
        }
        let mut features = BTreeMap::new();
        for (key, t) in st.tensors() {
            if ROW_TENSORS.contains(&key.as_str()) {
                continue;
            }
            let shape = t.shape();
            if shape.len() != 2 || shape[0] != n || shape[1] > MAX_DIM {
                return Err(format!(
                    "{name}: tensor `{key}` has shape {shape:?}, expected [{n}, dim ≤ {MAX_DIM}]"
                ));
            }
            let data = floats(name, &key, t.dtype(), t.data())?;
            let f = Features::new(n, shape[1], data).map_err(|e| format!("{name}: {key}: {e}"))?;
            features.insert(key, f);
        }
        let rows = index.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        Ok(Self {
            features,
            labels,
            index,
            rows,
        })
    }

    /// Rows in the file.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The row holding dataset sample `index`, if the snapshot has it.
    pub fn row_of(&self, index: usize) -> Option<usize> {
        self.rows.get(&index).copied()
    }
}

/// Dataset indices stored as floats: whole, non-negative and exact in f32 (< 2^24).
fn indices(name: &str, v: &[f32]) -> Result<Vec<usize>, String> {
    v.iter()
        .map(|&x| {
            let ok = x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 16_777_216.0;
            ok.then_some(x as usize)
                .ok_or_else(|| format!("{name}: `index` holds {x}, not a dataset index"))
        })
        .collect()
}

/// A tensor's little-endian float bytes as f32 (F32, F16, BF16, F64).
fn floats(name: &str, key: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, String> {
    let conv = |size: usize, f: &dyn Fn(&[u8]) -> f32| data.chunks_exact(size).map(f).collect();
    match dtype {
        Dtype::F32 => Ok(conv(4, &|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Dtype::F64 => Ok(conv(8, &|b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        })),
        Dtype::F16 => Ok(conv(2, &|b| {
            half::f16::from_le_bytes([b[0], b[1]]).to_f32()
        })),
        Dtype::BF16 => Ok(conv(2, &|b| {
            half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
        })),
        other => Err(format!(
            "{name}: tensor `{key}` has dtype {other:?}; snapshots hold float tensors"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn file(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s, v)| {
                (
                    n.to_string(),
                    s.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, &None).unwrap()
    }

    #[test]
    fn rows_labels_and_features_are_read_by_name() {
        let bytes = file(&[
            ("index", vec![3], vec![7.0, 2.0, 9.0]),
            ("labels", vec![3], vec![1.0, -1.0, 0.0]),
            ("cls3", vec![3, 2], vec![1., 2., 3., 4., 5., 6.]),
            ("block.0", vec![3, 1], vec![0.5, 0.25, 0.125]),
        ]);
        let s = SnapshotData::parse("s", &bytes).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.labels, [Some(1), None, Some(0)]);
        assert_eq!(s.row_of(9), Some(2));
        assert_eq!(s.row_of(8), None);
        assert_eq!(s.features["cls3"].row(1), [3.0, 4.0]);
        assert_eq!(s.features.keys().collect::<Vec<_>>(), ["block.0", "cls3"]);
    }

    #[test]
    fn a_file_that_is_not_a_snapshot_is_named_in_the_error() {
        let no_index = file(&[("labels", vec![1], vec![0.0])]);
        let e = SnapshotData::parse("snapshots/x", &no_index).unwrap_err();
        assert!(e.contains("snapshots/x") && e.contains("`index`"), "{e}");
        let wrong = file(&[
            ("index", vec![2], vec![0.0, 1.0]),
            ("labels", vec![2], vec![0.0, 1.0]),
            ("cls0", vec![3, 2], vec![0.0; 6]),
        ]);
        let e = SnapshotData::parse("s", &wrong).unwrap_err();
        assert!(e.contains("`cls0`") && e.contains("[3, 2]"), "{e}");
        let negative = file(&[
            ("index", vec![2], vec![0.0, -1.0]),
            ("labels", vec![2], vec![0.0, 1.0]),
        ]);
        let e = SnapshotData::parse("s", &negative).unwrap_err();
        assert!(e.contains("holds -1"), "{e}");
        // a few bytes may not ask for a 100 000-wide PCA
        let wide = file(&[
            ("index", vec![1], vec![0.0]),
            ("labels", vec![1], vec![0.0]),
            ("cls0", vec![1, 100_000], vec![0.0; 100_000]),
        ]);
        let e = SnapshotData::parse("s", &wide).unwrap_err();
        assert!(e.contains("dim ≤ 8192"), "{e}");
        assert!(SnapshotData::parse("s", b"garbage").is_err());
    }
}
