//! IDX files (MNIST, Fashion-MNIST): `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`, read into
//! memory; grey pixels are replicated to RGB so the views of method.md §4.1 apply unchanged.

use anyhow::{Context, Result, bail, ensure};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::{Dataset, Sample, Split, out_of_range};

/// Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// An IDX image/label pair held in memory.
pub struct IdxDataset {
    dir: PathBuf,
    split: Split,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
    classes: Vec<String>,
}

fn prefix(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "t10k",
    }
}

/// `dir/stem` or `dir/stem.gz`, whichever exists.
fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// True when `dir` holds IDX image files of either split.
pub fn detect(dir: &Path) -> bool {
    ["train", "t10k"]
        .iter()
        .any(|p| find_file(dir, &format!("{p}-images-idx3-ubyte")).is_some())
}

/// Largest IDX data accepted, in bytes: 4 GiB (Fashion-MNIST's training images are 47 MB). The
/// header's dimensions are checked against it, and against the file, before the data is read; a
/// gzipped file is decompressed only up to what its header declares (a tiny `.gz` of zeros can
/// expand to gigabytes).
pub const MAX_IDX_BYTES: u64 = 4 << 30;

/// Reads an unsigned-byte IDX file with `ndims` dimensions (magic 0x0000080N), gunzipping it when
/// it starts with the gzip magic bytes; returns dims and data.
pub fn read_idx(path: &Path, ndims: u8) -> Result<(Vec<usize>, Vec<u8>)> {
    read_idx_capped(path, ndims, MAX_IDX_BYTES)
}

/// [`read_idx`] with the data-size cap as a parameter.
fn read_idx_capped(path: &Path, ndims: u8, cap: u64) -> Result<(Vec<usize>, Vec<u8>)> {
    use std::io::{BufReader, Seek};
    let cannot = || format!("cannot read {}", path.display());
    let invalid = || format!("{} is not a valid IDX file", path.display());
    let gz_corrupt = || {
        format!(
            "{}: corrupt gzip stream (download the file again)",
            path.display()
        )
    };
    let mut file = std::fs::File::open(path).with_context(cannot)?;
    let file_len = file.metadata().with_context(cannot)?.len();
    let mut magic = Vec::new();
    file.by_ref()
        .take(2)
        .read_to_end(&mut magic)
        .with_context(cannot)?;
    file.rewind().with_context(cannot)?;
    let gz = magic == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let header_len = 4 + 4 * ndims as u64;
    let mut header = Vec::new();
    reader
        .by_ref()
        .take(header_len)
        .read_to_end(&mut header)
        .with_context(|| if gz { gz_corrupt() } else { cannot() })?;
    let (dims, n) = parse_header(&header, ndims).with_context(invalid)?;
    if !gz {
        let have = file_len.saturating_sub(header_len);
        ensure!(
            have == n,
            "{}: dimensions {dims:?} need {n} data bytes but the file has {have} (truncated or corrupt)",
            path.display()
        );
    }
    ensure!(
        n <= cap,
        "{}: dimensions {dims:?} declare {n} data bytes, more than the {cap}-byte limit for IDX files \
         (corrupt header?)",
        path.display()
    );
    let mut data = Vec::new();
    reader
        .take(n + 1)
        .read_to_end(&mut data)
        .with_context(|| if gz { gz_corrupt() } else { cannot() })?;
    let have = data.len() as u64;
    ensure!(
        have <= n,
        "{}: decompresses to more than the {n} data bytes its dimensions {dims:?} declare \
         (corrupt file or a gzip bomb)",
        path.display()
    );
    ensure!(
        have == n,
        "{}: dimensions {dims:?} need {n} data bytes but the file has {have} (truncated or corrupt)",
        path.display()
    );
    Ok((dims, data))
}

/// Parses an IDX header (big-endian magic `0x00 0x00 0x08 ndims`, `ndims` big-endian u32
/// sizes): the dimensions and the data length they declare (checked arithmetic).
fn parse_header(bytes: &[u8], ndims: u8) -> Result<(Vec<usize>, u64)> {
    ensure!(
        bytes.len() >= 4,
        "only {} bytes: too short for an IDX header",
        bytes.len()
    );
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected = 0x0000_0800u32 | ndims as u32;
    if magic != expected {
        bail!(
            "bad magic number 0x{magic:08x}, expected 0x{expected:08x} (unsigned bytes, {ndims} dimensions): \
             wrong file, or a truncated/corrupt download"
        );
    }
    let header = 4 + 4 * ndims as usize;
    ensure!(
        bytes.len() >= header,
        "header truncated: {} bytes, need {header}",
        bytes.len()
    );
    let dims32: Vec<u32> = (0..ndims as usize)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
        })
        .collect();
    let n = dims32
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .with_context(|| format!("dimensions {dims32:?} overflow"))?;
    let dims = dims32
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((dims, n))
}

/// Parses IDX bytes: big-endian magic `0x00 0x00 0x08 ndims`, `ndims` big-endian u32 sizes, data.
pub fn parse_idx(bytes: &[u8], ndims: u8) -> Result<(Vec<usize>, Vec<u8>)> {
    let (dims, n) = parse_header(bytes, ndims)?;
    let header = 4 + 4 * ndims as usize;
    let have = (bytes.len() - header) as u64;
    ensure!(
        have == n,
        "dimensions {dims:?} need {n} data bytes but the file has {have} (truncated or corrupt)"
    );
    Ok((dims, bytes[header..].to_vec()))
}

/// True when the folder name says MNIST digits rather than Fashion-MNIST.
fn looks_like_digits(dir: &Path) -> bool {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.contains("mnist") && !name.contains("fashion") && !name.contains("fmnist")
}

/// Class names: Fashion-MNIST's for 10 classes (digits when the folder is named like plain MNIST).
fn class_names(dir: &Path, n_classes: usize) -> Vec<String> {
    if n_classes == 10 && !looks_like_digits(dir) {
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..n_classes).map(|i| i.to_string()).collect()
    }
}

impl IdxDataset {
    /// Opens the `split` of the IDX pair in `dir` (`train-*` or `t10k-*`).
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        let p = prefix(split);
        let need = |stem: String| {
            find_file(dir, &stem).with_context(|| {
                format!(
                    "IDX folder {} has no {stem} or {stem}.gz for the {split} split",
                    dir.display()
                )
            })
        };
        let img_path = need(format!("{p}-images-idx3-ubyte"))?;
        let lab_path = need(format!("{p}-labels-idx1-ubyte"))?;
        let (dims, pixels) = read_idx(&img_path, 3)?;
        let (ldims, labels) = read_idx(&lab_path, 1)?;
        ensure!(
            dims[0] == ldims[0],
            "{} has {} images but {} has {} labels: the files do not belong together",
            img_path.display(),
            dims[0],
            lab_path.display(),
            ldims[0]
        );
        let n_classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let classes = class_names(dir, n_classes);
        Ok(Self {
            dir: dir.to_path_buf(),
            split,
            rows: dims[1],
            cols: dims[2],
            pixels,
            labels,
            classes,
        })
    }
}

impl Dataset for IdxDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let label = *self
            .labels
            .get(index)
            .ok_or_else(|| out_of_range(index, self.len(), "IDX dataset"))?;
        let plane = self.rows * self.cols;
        let grey = &self.pixels[index * plane..(index + 1) * plane];
        let rgb: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
        let image = image::RgbImage::from_raw(self.cols as u32, self.rows as u32, rgb)
            .context("IDX image buffer has the wrong size")?;
        Ok(Sample {
            index,
            label: Some(label as u32),
            image,
        })
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn describe(&self) -> String {
        format!(
            "IDX {} ({} split): {} grey images {}x{}, {} classes",
            self.dir.display(),
            self.split,
            self.len(),
            self.cols,
            self.rows,
            self.classes.len()
        )
    }

    fn label(&self, index: usize) -> Result<Option<u32>> {
        let l = self
            .labels
            .get(index)
            .ok_or_else(|| out_of_range(index, self.len(), "IDX dataset"))?;
        Ok(Some(*l as u32))
    }
}

/// Where Fashion-MNIST's IDX files are: `$MIMR_FASHION_MNIST`, else Debian's
/// `dataset-fashion-mnist` location.
pub fn fashion_mnist_dir() -> PathBuf {
    std::env::var_os("MIMR_FASHION_MNIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(ndims: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, ndims];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write_tiny(dir: &Path, compress: bool) {
        let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
        let imgs = idx_bytes(3, &[2, 2, 3], &pixels);
        let labs = idx_bytes(1, &[2], &[7, 3]);
        let (a, b) = if compress {
            (gz(&imgs), gz(&labs))
        } else {
            (imgs, labs)
        };
        let ext = if compress { ".gz" } else { "" };
        std::fs::write(dir.join(format!("train-images-idx3-ubyte{ext}")), a).unwrap();
        std::fs::write(dir.join(format!("train-labels-idx1-ubyte{ext}")), b).unwrap();
    }

    #[test]
    fn tiny_idx_raw_and_gz_read_identically() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_tiny(dir.path(), compress);
            assert!(detect(dir.path()));
            let ds = crate::data::open(dir.path(), Split::Train).unwrap();
            assert_eq!(ds.len(), 2);
            let s = ds.get(1).unwrap();
            assert_eq!((s.index, s.label), (1, Some(3)));
            assert_eq!(s.image.dimensions(), (3, 2));
            // image 1 starts at pixel 6: value 120; pixel (x=2, y=1) is the last one, 11 * 20.
            assert_eq!(s.image.get_pixel(0, 0).0, [120, 120, 120]);
            assert_eq!(s.image.get_pixel(2, 1).0, [220, 220, 220]);
            assert_eq!(ds.classes().len(), 8);
            assert!(ds.get(2).is_err());
        }
    }

    #[test]
    fn corrupt_header_and_truncated_data_are_clear_errors() {
        let err = parse_idx(&idx_bytes(4, &[1, 1, 1, 1], &[0]), 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad magic number 0x00000804") && err.contains("0x00000803"),
            "{err}"
        );
        let err = parse_idx(&idx_bytes(3, &[2, 2, 2], &[0; 7]), 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("need 8 data bytes") && err.contains("has 7"),
            "{err}"
        );
        let err = parse_idx(&[0, 0], 1).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            idx_bytes(1, &[3], &[1, 2, 3]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            idx_bytes(1, &[3], &[1, 2, 3]),
        )
        .unwrap();
        let err = format!(
            "{:#}",
            IdxDataset::open(dir.path(), Split::Train).err().unwrap()
        );
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("bad magic"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            IdxDataset::open(dir.path(), Split::Test).err().unwrap()
        );
        assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
    }

    #[test]
    fn header_claiming_2_pow_40_bytes_is_an_error_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(3, &[1 << 14, 1 << 13, 1 << 13], &[0; 64]);
        let err = parse_idx(&bytes, 3).unwrap_err().to_string();
        assert!(err.contains("need 1099511627776 data bytes"), "{err}");
        for (name, b) in [("raw", bytes.clone()), ("z.gz", gz(&bytes))] {
            let p = dir.path().join(name);
            std::fs::write(&p, b).unwrap();
            // gzipped: refused by the cap before decompressing; raw: by the file's length
            let err = format!("{:#}", read_idx(&p, 3).unwrap_err());
            assert!(
                err.contains(name) && err.contains("1099511627776 data bytes"),
                "{err}"
            );
        }
        // u32 dimensions whose product overflows u64
        let bytes = idx_bytes(3, &[u32::MAX; 3], &[]);
        assert!(
            parse_idx(&bytes, 3)
                .unwrap_err()
                .to_string()
                .contains("overflow")
        );
    }

    #[test]
    fn gzip_bombs_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.gz");
        // declares 6 bytes, then 16 MB of zeros (a 16 KB .gz)
        std::fs::write(&p, gz(&idx_bytes(3, &[1, 2, 3], &vec![0; 16 << 20]))).unwrap();
        let err = format!("{:#}", read_idx(&p, 3).unwrap_err());
        assert!(
            err.contains("bomb.gz") && err.contains("more than the 6 data bytes"),
            "{err}"
        );
        // declares (and holds) 1 MB: over a lowered cap it is refused before decompressing
        std::fs::write(&p, gz(&idx_bytes(3, &[100, 100, 100], &vec![0; 1_000_000]))).unwrap();
        let err = format!("{:#}", read_idx_capped(&p, 3, 100_000).unwrap_err());
        assert!(err.contains("100000-byte limit"), "{err}");
        assert_eq!(
            read_idx_capped(&p, 3, 1_000_000).unwrap().1.len(),
            1_000_000
        );
        // a truncated stream is a clear error
        let full = gz(&idx_bytes(1, &[3], &[1, 2, 3]));
        std::fs::write(&p, &full[..full.len() - 6]).unwrap();
        assert!(read_idx(&p, 1).is_err());
    }

    #[test]
    fn mutated_idx_files_give_ok_or_err_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let good = idx_bytes(3, &[3, 4, 5], &(0..60).collect::<Vec<u8>>());
        let good_gz = gz(&good);
        let mut m = crate::data::mutate::Mutator::new(1400);
        let mut errors = 0;
        for i in 0..500 {
            let ok = if i % 2 == 0 {
                parse_idx(&m.mutate(&good), 3).is_ok()
            } else {
                let p = dir.path().join("m.gz");
                std::fs::write(&p, m.mutate(&good_gz)).unwrap();
                read_idx(&p, 3).is_ok()
            };
            errors += !ok as usize;
        }
        assert!(errors > 100, "{errors}");
    }

    fn fashion_dir() -> PathBuf {
        let dir = super::fashion_mnist_dir();
        assert!(
            dir.is_dir(),
            "Fashion-MNIST not found at {}: run `apt-get install dataset-fashion-mnist` \
             (or set MIMR_FASHION_MNIST to a folder with the IDX files)",
            dir.display()
        );
        dir
    }

    #[test]
    fn real_fashion_mnist_has_the_published_counts() {
        let dir = fashion_dir();
        for (split, n) in [(Split::Train, 60_000usize), (Split::Test, 10_000)] {
            let ds = IdxDataset::open(&dir, split).unwrap();
            assert_eq!(ds.len(), n, "{split}");
            assert_eq!(ds.classes()[0], "T-shirt/top");
            assert_eq!(ds.classes()[9], "Ankle boot");
            let mut counts = [0usize; 10];
            for i in 0..ds.len() {
                counts[ds.label(i).unwrap().unwrap() as usize] += 1;
            }
            assert!(counts.iter().all(|&c| c == n / 10), "{split}: {counts:?}");
            let s = ds.get(n - 1).unwrap();
            assert_eq!(s.image.dimensions(), (28, 28));
            assert!(
                s.image.pixels().any(|p| p.0[0] > 0),
                "last {split} image is all black"
            );
        }
    }
}
