//! CIFAR-10 / CIFAR-100 binary batches (`data_batch_*.bin`, `test_batch.bin`; `train.bin`, `test.bin`):
//! fixed-size records of label byte(s) then 32×32 pixels stored channel-major, held in memory.

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};

use super::dataset::{Dataset, Sample, Split, out_of_range};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;

/// CIFAR-10 class names (used when `batches.meta.txt` is missing).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cifar10,
    Cifar100,
}

impl Kind {
    /// Label bytes before the pixels, index of the label used, number of classes.
    fn layout(self) -> (usize, usize, usize) {
        match self {
            Kind::Cifar10 => (1, 0, 10),
            Kind::Cifar100 => (2, 1, 100),
        }
    }
}

/// A CIFAR split held in memory as raw records.
pub struct CifarDataset {
    dir: PathBuf,
    split: Split,
    kind: Kind,
    records: Vec<u8>,
    classes: Vec<String>,
}

fn kind_of(dir: &Path) -> Option<Kind> {
    let has = |n: &str| dir.join(n).is_file();
    if has("data_batch_1.bin") || has("test_batch.bin") {
        Some(Kind::Cifar10)
    } else if has("train.bin") || has("test.bin") {
        Some(Kind::Cifar100)
    } else {
        None
    }
}

/// The folder holding CIFAR batches: `dir` itself or its `cifar-10-batches-bin` / `cifar-100-binary`.
pub fn detect(dir: &Path) -> Option<PathBuf> {
    [
        dir.to_path_buf(),
        dir.join("cifar-10-batches-bin"),
        dir.join("cifar-100-binary"),
    ]
    .into_iter()
    .find(|d| kind_of(d).is_some())
}

/// Non-empty trimmed lines of a names file, or `None` when it does not exist.
fn read_names(path: &Path) -> Result<Option<Vec<String>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    ))
}

fn batch_files(dir: &Path, kind: Kind, split: Split) -> Vec<PathBuf> {
    let names: Vec<String> = match (kind, split) {
        (Kind::Cifar10, Split::Train) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        (Kind::Cifar10, Split::Test) => vec!["test_batch.bin".into()],
        (Kind::Cifar100, Split::Train) => vec!["train.bin".into()],
        (Kind::Cifar100, Split::Test) => vec!["test.bin".into()],
    };
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Largest batch file read: 1 GiB (CIFAR-100's `train.bin` is 154 MB); checked before reading.
pub const MAX_BATCH_BYTES: u64 = 1 << 30;

/// Reads one batch file and checks that its size and labels are consistent with `kind`.
fn read_batch(path: &Path, kind: Kind) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    ensure!(
        len <= MAX_BATCH_BYTES,
        "{}: {len} bytes is more than the {MAX_BATCH_BYTES} a CIFAR batch file may have \
         (not a CIFAR binary batch?)",
        path.display()
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    check_batch(&bytes, kind).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(bytes)
}

/// Checks that `bytes` are whole records of `kind` (at least one) with labels in range.
fn check_batch(bytes: &[u8], kind: Kind) -> Result<()> {
    let (hdr, lab, n_classes) = kind.layout();
    let rec = hdr + PIXELS;
    ensure!(
        !bytes.is_empty() && bytes.len().is_multiple_of(rec),
        "size {} bytes is not a positive multiple of the {kind:?} record size {rec} (truncated or not a CIFAR binary batch)",
        bytes.len()
    );
    let mut labels = bytes.chunks_exact(rec).map(|r| r[lab]).enumerate();
    if let Some((i, l)) = labels.find(|&(_, l)| l as usize >= n_classes) {
        bail!("record {i} has label {l}, but {kind:?} has {n_classes} classes (corrupt file)");
    }
    // CIFAR-100 records carry a coarse label (20 superclasses) before the fine one
    if kind == Kind::Cifar100
        && let Some((i, c)) = bytes
            .chunks_exact(rec)
            .map(|r| r[0])
            .enumerate()
            .find(|&(_, c)| c >= 20)
    {
        bail!("record {i} has coarse label {c}, but CIFAR-100 has 20 superclasses (corrupt file)");
    }
    Ok(())
}

fn class_names(dir: &Path, kind: Kind) -> Result<Vec<String>> {
    let (_, _, n) = kind.layout();
    let file = match kind {
        Kind::Cifar10 => "batches.meta.txt",
        Kind::Cifar100 => "fine_label_names.txt",
    };
    let names = read_names(&dir.join(file))?.unwrap_or_else(|| match kind {
        Kind::Cifar10 => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        Kind::Cifar100 => (0..n).map(|i| i.to_string()).collect(),
    });
    ensure!(
        names.len() == n,
        "{}: {} class names, expected {n}",
        dir.join(file).display(),
        names.len()
    );
    Ok(names)
}

impl CifarDataset {
    /// Opens the `split` of the CIFAR-10 or CIFAR-100 batches in `dir` (as found by [`detect`]).
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        let kind = kind_of(dir)
            .with_context(|| format!("{} holds no CIFAR binary batches", dir.display()))?;
        let files = batch_files(dir, kind, split);
        let missing: Vec<String> = files
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{kind:?} folder {} lacks {} for the {split} split",
                dir.display(),
                missing.join(", ")
            );
        }
        let mut records = Vec::new();
        for f in &files {
            records.extend(read_batch(f, kind)?);
        }
        let classes = class_names(dir, kind)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            split,
            kind,
            records,
            classes,
        })
    }

    fn record_len(&self) -> usize {
        self.kind.layout().0 + PIXELS
    }
}

impl Dataset for CifarDataset {
    fn len(&self) -> usize {
        self.records.len() / self.record_len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        if index >= self.len() {
            return Err(out_of_range(index, self.len(), "CIFAR dataset"));
        }
        let (hdr, lab, _) = self.kind.layout();
        let rec = &self.records[index * self.record_len()..(index + 1) * self.record_len()];
        let chw = &rec[hdr..];
        let plane = SIDE * SIDE;
        let hwc: Vec<u8> = (0..plane)
            .flat_map(|p| [chw[p], chw[plane + p], chw[2 * plane + p]])
            .collect();
        let image = image::RgbImage::from_raw(SIDE as u32, SIDE as u32, hwc)
            .context("CIFAR image buffer has the wrong size")?;
        Ok(Sample {
            index,
            label: Some(rec[lab] as u32),
            image,
        })
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn describe(&self) -> String {
        format!(
            "{:?} {} ({} split): {} images 32x32, {} classes",
            self.kind,
            self.dir.display(),
            self.split,
            self.len(),
            self.classes.len()
        )
    }

    fn label(&self, index: usize) -> Result<Option<u32>> {
        if index >= self.len() {
            return Err(out_of_range(index, self.len(), "CIFAR dataset"));
        }
        Ok(Some(
            self.records[index * self.record_len() + self.kind.layout().1] as u32,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose pixel (x, y) has channels (x, y, 100 + label) and the given label byte(s).
    fn record(labels: &[u8], label: u8) -> Vec<u8> {
        let mut r = labels.to_vec();
        for c in 0..3 {
            for y in 0..SIDE {
                for x in 0..SIDE {
                    r.push([x as u8, y as u8, 100 + label][c]);
                }
            }
        }
        r
    }

    #[test]
    fn cifar10_batches_in_a_subfolder_read_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&dir).unwrap();
        for i in 1..=5u8 {
            let bytes = [record(&[i], i), record(&[9], 9)].concat();
            std::fs::write(dir.join(format!("data_batch_{i}.bin")), bytes).unwrap();
        }
        std::fs::write(dir.join("test_batch.bin"), record(&[0], 0)).unwrap();
        assert_eq!(detect(root.path()), Some(dir.clone()));
        let ds = crate::data::open(root.path(), Split::Train).unwrap();
        assert_eq!(ds.len(), 10);
        let s = ds.get(4).unwrap();
        assert_eq!(s.label, Some(3));
        assert_eq!(s.image.get_pixel(5, 7).0, [5, 7, 103]);
        assert_eq!(ds.classes()[3], "cat");
        assert_eq!(ds.label(5).unwrap(), Some(9));
        let test = crate::data::open(root.path(), Split::Test).unwrap();
        assert_eq!((test.len(), test.get(0).unwrap().label), (1, Some(0)));
    }

    #[test]
    fn cifar100_uses_the_fine_label_and_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("train.bin"),
            [record(&[1, 42], 42), record(&[2, 7], 7)].concat(),
        )
        .unwrap();
        let names = (0..100)
            .map(|i| format!("class{i}"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.path().join("fine_label_names.txt"), names).unwrap();
        let ds = CifarDataset::open(dir.path(), Split::Train).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.get(0).unwrap().label, Some(42));
        assert_eq!(ds.get(1).unwrap().image.get_pixel(31, 0).0, [31, 0, 107]);
        assert_eq!(ds.classes()[42], "class42");
        let err = CifarDataset::open(dir.path(), Split::Test)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("test.bin"), "{err}");
    }

    #[test]
    fn truncated_and_bad_label_batches_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_batch.bin"), [0u8; 3000]).unwrap();
        let err = CifarDataset::open(dir.path(), Split::Test)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not a positive multiple") && err.contains("3073"),
            "{err}"
        );
        std::fs::write(dir.path().join("test_batch.bin"), record(&[12], 0)).unwrap();
        let err = CifarDataset::open(dir.path(), Split::Test)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("label 12"), "{err}");
        let err = CifarDataset::open(dir.path(), Split::Train)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("data_batch_1.bin"), "{err}");
    }

    #[test]
    fn mutated_batches_give_ok_or_err_without_panicking() {
        let good10 = [record(&[1], 1), record(&[9], 9), record(&[0], 0)].concat();
        let good100 = [record(&[3, 42], 42), record(&[19, 99], 99)].concat();
        let mut m = crate::data::mutate::Mutator::new(10);
        let mut errors = 0;
        for i in 0..500 {
            let (kind, good) = if i % 2 == 0 {
                (Kind::Cifar10, &good10)
            } else {
                (Kind::Cifar100, &good100)
            };
            let bytes = m.mutate(good);
            match check_batch(&bytes, kind) {
                Ok(()) => {
                    let ds = CifarDataset {
                        dir: PathBuf::from("m"),
                        split: Split::Test,
                        kind,
                        records: bytes,
                        classes: vec![String::new(); kind.layout().2],
                    };
                    for j in 0..=ds.len() {
                        let (s, l) = (ds.get(j), ds.label(j));
                        assert_eq!(s.is_ok(), j < ds.len());
                        assert_eq!(l.unwrap_or(None), s.ok().and_then(|s| s.label));
                    }
                }
                Err(_) => errors += 1,
            }
        }
        assert!(errors > 100, "{errors}");
    }

    #[test]
    fn oversized_batch_file_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test_batch.bin");
        let f = std::fs::File::create(&p).unwrap();
        // sparse: no disk space used
        f.set_len(MAX_BATCH_BYTES + 3073).unwrap();
        let err = format!("{:#}", read_batch(&p, Kind::Cifar10).unwrap_err());
        assert!(
            err.contains("test_batch.bin") && err.contains("1073741824"),
            "{err}"
        );
    }
}
