//! Entry points that feed arbitrary bytes to each parser of untrusted input, shared by the
//! cargo-fuzz targets (fuzz/) and the stable replay of their findings (tests/fuzz_regressions.rs).
//!
//! Every entry returns whether the input was accepted; an error is a correct answer to bad
//! input, a panic, abort, hang or runaway allocation is a bug.

use crate::checkpoint;
use crate::data::{Split, cifar::CifarDataset, idx};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The parsers under fuzzing; the name is the fuzz target's and its regression folder's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `checkpoint::pickle::parse` on the raw bytes.
    Pickle,
    /// The bytes as `data.pkl` of a torch zip with four small storages, every tensor of the
    /// unpickled dict materialised: pickle → tensor views → gather, without the zip's CRCs in
    /// the fuzzer's way.
    TorchZip,
    /// The bytes as a whole checkpoint file (torch zip or safetensors, sniffed).
    Checkpoint,
    /// The bytes as a `.safetensors` checkpoint.
    Safetensors,
    /// The bytes as an IDX images file (gzip-compressed when they start with gzip's magic).
    Idx,
    /// The bytes as a CIFAR-10 `test_batch.bin`.
    Cifar,
    /// The bytes as a run log (`events.jsonl`), read whole; accepted when no line was skipped.
    Runlog,
    /// The bytes as a refine and a pretrain config file.
    Config,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Self::Pickle,
        Self::TorchZip,
        Self::Checkpoint,
        Self::Safetensors,
        Self::Idx,
        Self::Cifar,
        Self::Runlog,
        Self::Config,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Pickle => "pickle",
            Self::TorchZip => "torch_zip",
            Self::Checkpoint => "checkpoint",
            Self::Safetensors => "safetensors",
            Self::Idx => "idx",
            Self::Cifar => "cifar",
            Self::Runlog => "runlog",
            Self::Config => "config",
        }
    }

    /// Feeds `bytes` to the target's parser; true when it accepted them.
    pub fn run(self, bytes: &[u8]) -> bool {
        match self {
            Self::Pickle => checkpoint::pickle::parse(bytes).is_ok(),
            Self::TorchZip => torch_tensors(&torch_zip_around(bytes)),
            Self::Checkpoint => checkpoint_file("f.th", bytes),
            Self::Safetensors => checkpoint_file("f.safetensors", bytes),
            Self::Idx => idx_file(bytes),
            Self::Cifar => cifar_file(bytes),
            Self::Runlog => crate::runlog::tail::read_all(&scratch_file("events.jsonl", bytes))
                .is_ok_and(|r| r.notices.is_empty()),
            Self::Config => config_file(bytes),
        }
    }
}

/// A per-process scratch folder (files are rewritten per input).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mimr-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    let _ = std::fs::write(&path, bytes);
    path
}

fn checkpoint_file(name: &str, bytes: &[u8]) -> bool {
    checkpoint::load(&scratch_file(name, bytes), None).is_ok()
}

/// A torch.save-style zip holding `pkl` as `archive/data.pkl` and storages `0`–`3` of
/// 1, 4, 16 and 64 float32 values.
pub fn torch_zip_around(pkl: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut put = |name: &str, data: &[u8]| -> zip::result::ZipResult<()> {
        zip.start_file(name, opts)?;
        zip.write_all(data)?;
        Ok(())
    };
    let mut ok = put("archive/data.pkl", pkl).is_ok();
    for (key, n) in [(0usize, 1usize), (1, 4), (2, 16), (3, 64)] {
        let data: Vec<u8> = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
        ok &= put(&format!("archive/data/{key}"), &data).is_ok();
    }
    ok &= put("archive/version", b"3\n").is_ok();
    ok &= zip.finish().is_ok();
    if ok { out.into_inner() } else { Vec::new() }
}

fn torch_tensors(zip: &[u8]) -> bool {
    let path = Path::new("fuzz.pth");
    let Ok(mut archive) = checkpoint::torch_zip::TorchArchive::open(path, zip.to_vec()) else {
        return false;
    };
    let root = archive.root.clone();
    archive.tensors_of(&root, "root").is_ok()
}

fn idx_file(bytes: &[u8]) -> bool {
    let name = if bytes.starts_with(&[0x1f, 0x8b]) {
        "train-images-idx3-ubyte.gz"
    } else {
        "train-images-idx3-ubyte"
    };
    idx::read_idx(&scratch_file(name, bytes), 3).is_ok()
}

fn cifar_file(bytes: &[u8]) -> bool {
    let dir = scratch().join("cifar");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("test_batch.bin"), bytes);
    CifarDataset::open(&dir, Split::Test).is_ok()
}

fn config_file(bytes: &[u8]) -> bool {
    let path = scratch_file("config.toml", bytes);
    let refine = crate::refine::config::RefineConfig::load(&path, &[]).is_ok();
    let pretrain = crate::pretrain::config::PretrainConfig::load(&path, &[]).is_ok();
    refine || pretrain
}
