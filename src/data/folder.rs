//! ImageFolder datasets: class subfolders (labels sorted by name) or a flat folder (unlabelled),
//! optionally under `train/` + `test/`; files are listed at open and decoded lazily in `get`.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use super::dataset::{Dataset, Sample, Split, out_of_range};

/// Image files and their labels; decoding happens on demand.
pub struct FolderDataset {
    root: PathBuf,
    split: Option<Split>,
    items: Vec<(PathBuf, Option<u32>)>,
    classes: Vec<String>,
    loose_ignored: usize,
}

/// File extensions read as images.
const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "webp", "gif"];

/// Image files below `dir` (recursively), sorted by path; an error when there are none.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("cannot read folder {}", d.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    anyhow::ensure!(
        !out.is_empty(),
        "no images ({}) found in {}",
        EXTENSIONS.join(", "),
        dir.display()
    );
    Ok(out)
}

/// Visible subfolders of `dir`, sorted by name.
fn subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let p = e
            .with_context(|| format!("cannot list folder {}", dir.display()))?
            .path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if p.is_dir() && !hidden {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The folder to read for `split`: `path/train` or `path/test` (or `path/val`) when present.
fn split_root(path: &Path, split: Split) -> (PathBuf, Option<Split>) {
    let train = path.join("train");
    let test = ["test", "val"]
        .iter()
        .map(|n| path.join(n))
        .find(|p| p.is_dir());
    match (train.is_dir(), test, split) {
        (true, Some(_), Split::Train) => (train, Some(split)),
        (true, Some(t), Split::Test) => (t, Some(split)),
        _ => (path.to_path_buf(), None),
    }
}

/// Number of image files directly inside `dir` (ignored when class subfolders exist).
fn loose_images(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|it| it.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0)
}

impl FolderDataset {
    /// Lists the images of `path` (or of its `train/` / `test/` part for `split`).
    pub fn open(path: &Path, split: Split) -> Result<Self> {
        let (root, split) = split_root(path, split);
        let classes_dirs = subfolders(&root)?;
        let (mut items, mut classes, mut loose_ignored) = (Vec::new(), Vec::new(), 0);
        if classes_dirs.is_empty() {
            let files = list_images(&root)
                .with_context(|| format!("image folder {} has no images", root.display()))?;
            items.extend(files.into_iter().map(|f| (f, None)));
        } else {
            loose_ignored = loose_images(&root);
            for (label, dir) in classes_dirs.iter().enumerate() {
                let files = list_images(dir).with_context(|| {
                    format!(
                        "class folder {} has no images: add images or remove the folder",
                        dir.display()
                    )
                })?;
                items.extend(files.into_iter().map(|f| (f, Some(label as u32))));
                classes.push(
                    dir.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        }
        Ok(Self {
            root,
            split,
            items,
            classes,
            loose_ignored,
        })
    }
}

/// Largest image width or height decoded: 16384 pixels.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Most memory a decoder may allocate for one image: 512 MiB.
pub const MAX_IMAGE_ALLOC: u64 = 512 << 20;

/// Decodes an image file, guessing the format from its content (not only its extension). The
/// decoder's limits ([`MAX_IMAGE_SIDE`], [`MAX_IMAGE_ALLOC`]) make a small file that claims a huge
/// image an error like any corrupt file, before its pixels are allocated.
pub fn decode_file(path: &Path) -> Result<image::RgbImage> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .with_context(|| format!("cannot decode image {}", path.display()))?;
    Ok(img.into_rgb8())
}

impl Dataset for FolderDataset {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (path, label) = self
            .items
            .get(index)
            .ok_or_else(|| out_of_range(index, self.len(), "image folder"))?;
        Ok(Sample {
            index,
            label: *label,
            image: decode_file(path)?,
        })
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn has_own_split(&self) -> bool {
        self.split.is_some()
    }

    fn describe(&self) -> String {
        let split = self
            .split
            .map(|s| format!(" ({s} split)"))
            .unwrap_or_default();
        let kind = if self.classes.is_empty() {
            "unlabelled".to_string()
        } else {
            format!("{} classes", self.classes.len())
        };
        let loose = match self.loose_ignored {
            0 => String::new(),
            n => format!(", {n} loose files beside the class folders ignored"),
        };
        format!(
            "image folder {}{split}: {} files, {kind}{loose}",
            self.root.display(),
            self.len()
        )
    }

    fn label(&self, index: usize) -> Result<Option<u32>> {
        let (_, label) = self
            .items
            .get(index)
            .ok_or_else(|| out_of_range(index, self.len(), "image folder"))?;
        Ok(*label)
    }

    fn verify(&self, index: usize) -> Result<()> {
        self.get(index).map(|_| ())
    }

    fn item_name(&self, index: usize) -> String {
        self.items
            .get(index)
            .map_or_else(|| format!("#{index}"), |(p, _)| p.display().to_string())
    }
}

/// Test helper: writes `cat/` (3 PNGs) and `dog/` (2 PNGs, plus a corrupt `bad.jpg` when asked).
#[cfg(test)]
pub(crate) fn make_test_folder(root: &Path, corrupt: bool) {
    for (class, n) in [("cat", 3u8), ("dog", 2u8)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(20 + i as u32, 16, |x, y| {
                image::Rgb([
                    (x * 10) as u8,
                    (y * 12) as u8,
                    40 * i + if class == "cat" { 0 } else { 100 },
                ])
            });
            img.save(dir.join(format!("{class}{i}.png"))).unwrap();
        }
    }
    if corrupt {
        let mut bytes = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
        ];
        bytes.extend([0x42; 40]);
        std::fs::write(root.join("dog").join("bad.jpg"), bytes).unwrap();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn class_folders_give_sorted_labels_and_corrupt_files_fail_in_get() {
        let dir = tempfile::tempdir().unwrap();
        make_test_folder(dir.path(), true);
        let ds = crate::data::open(dir.path(), Split::Train).unwrap();
        assert_eq!(ds.classes(), ["cat".to_string(), "dog".to_string()]);
        assert_eq!(ds.len(), 6);
        let labels: Vec<_> = (0..6).map(|i| ds.label(i).unwrap()).collect();
        assert_eq!(
            labels,
            [Some(0), Some(0), Some(0), Some(1), Some(1), Some(1)]
        );
        // sorted paths: dog/bad.jpg comes before dog/dog0.png
        let err = format!("{:#}", ds.get(3).err().unwrap());
        assert!(err.contains("bad.jpg"), "{err}");
        assert!(ds.verify(3).is_err() && ds.verify(4).is_ok());
        let s = ds.get(1).unwrap();
        assert_eq!(
            (s.index, s.label, s.image.dimensions()),
            (1, Some(0), (21, 16))
        );
        assert_eq!(s.image.get_pixel(2, 1).0, [20, 12, 40]);
    }

    #[test]
    fn flat_folder_is_unlabelled_and_split_folders_are_used() {
        let dir = tempfile::tempdir().unwrap();
        image::RgbImage::new(4, 4)
            .save(dir.path().join("a.png"))
            .unwrap();
        image::RgbImage::new(4, 4)
            .save(dir.path().join("b.png"))
            .unwrap();
        let ds = FolderDataset::open(dir.path(), Split::Train).unwrap();
        assert_eq!(
            (ds.len(), ds.classes().len(), ds.label(0).unwrap()),
            (2, 0, None)
        );
        assert!(ds.describe().contains("unlabelled"), "{}", ds.describe());

        let split = tempfile::tempdir().unwrap();
        make_test_folder(&split.path().join("train"), false);
        std::fs::create_dir_all(split.path().join("test").join("cat")).unwrap();
        image::RgbImage::new(4, 4)
            .save(split.path().join("test").join("cat").join("x.png"))
            .unwrap();
        let train = FolderDataset::open(split.path(), Split::Train).unwrap();
        let test = FolderDataset::open(split.path(), Split::Test).unwrap();
        assert_eq!((train.len(), test.len()), (5, 1));
        assert!(
            test.describe().contains("test split"),
            "{}",
            test.describe()
        );
    }

    /// A PNG with a valid header claiming `w`×`h` pixels and (tiny) valid zlib data that
    /// decodes to far fewer bytes.
    pub(crate) fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend((data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend(data);
            let mut crc = flate2::Crc::new();
            crc.update(&body);
            out.extend(&body);
            out.extend(crc.sum().to_be_bytes());
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
        chunk(&mut png, b"IHDR", &ihdr);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &vec![0u8; 1 << 16]).unwrap();
        chunk(&mut png, b"IDAT", &z.finish().unwrap());
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn images_claiming_huge_sizes_are_skipped_and_counted_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        make_test_folder(dir.path(), false);
        let cat = dir.path().join("cat");
        // 100000 x 100000 (30 GB of pixels) from an 80-byte file
        std::fs::write(cat.join("huge.png"), png_claiming(100_000, 100_000)).unwrap();
        // a real 20000 x 1 image: tiny, but wider than the limit (image's default limits take it)
        image::RgbImage::new(20_000, 1)
            .save(cat.join("wide.png"))
            .unwrap();
        let ds = FolderDataset::open(dir.path(), Split::Train).unwrap();
        let names: Vec<String> = (0..ds.len()).map(|i| ds.item_name(i)).collect();
        let mut skipped = 0;
        let got: Vec<usize> = (0..ds.len())
            .filter_map(|i| crate::data::get_or_skip(&ds, i, &mut skipped).map(|s| s.index))
            .collect();
        assert_eq!(skipped, 2, "{names:?}");
        assert_eq!(got.len(), 5);
        for (i, name) in names.iter().enumerate() {
            let bad = name.ends_with("huge.png") || name.ends_with("wide.png");
            assert_eq!(ds.verify(i).is_err(), bad, "{name}");
        }
        let huge = names.iter().position(|n| n.ends_with("huge.png")).unwrap();
        let err = format!("{:#}", ds.get(huge).err().unwrap());
        assert!(err.contains("huge.png") && err.contains("limit"), "{err}");
    }

    #[test]
    fn empty_class_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        make_test_folder(dir.path(), false);
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let err = format!(
            "{:#}",
            FolderDataset::open(dir.path(), Split::Train).err().unwrap()
        );
        assert!(
            err.contains("class folder") && err.contains("empty"),
            "{err}"
        );
    }
}
