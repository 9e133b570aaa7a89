//! `mimr embed`: pooled features of chosen blocks (and the encoder output) for a tensor of
//! normalised images or an image folder, written as safetensors `block.<i>` and `final`.

use super::{CkptArgs, DeviceArgs};
use crate::checkpoint::st;
use crate::host::{HostTensor, TensorMap};
use crate::images;
use crate::model::features::{self, Tap};
use crate::model::vit::{Pool, Vit};
use crate::progress::Progress;
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub ckpt: CkptArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// safetensors file with a tensor "images" [B,3,H,W], already normalised.
    #[arg(long, conflicts_with = "images", required_unless_present = "images")]
    pub input_tensor: Option<PathBuf>,
    /// Folder of images (recursive); eval transform = resize shorter side + centre crop.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Blocks to write: all, last, or a comma list of 0-indexed blocks (e.g. 3,5).
    #[arg(long, default_value = "all")]
    pub blocks: String,
    /// Token pooling: cls, mean (patch tokens) or cls-mean (concatenated).
    #[arg(long, value_enum, default_value = "cls")]
    pub pool: PoolArg,
    /// `final` = last block output without the final LayerNorm (the paper's eval protocol).
    #[arg(long)]
    pub no_final_norm: bool,
    /// Centre-crop size for --images (default: the checkpoint's native image size).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Output .safetensors file.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PoolArg {
    Cls,
    Mean,
    ClsMean,
}

impl From<PoolArg> for Pool {
    fn from(p: PoolArg) -> Self {
        match p {
            PoolArg::Cls => Pool::Cls,
            PoolArg::Mean => Pool::Mean,
            PoolArg::ClsMean => Pool::ClsMean,
        }
    }
}

/// Parses `all`, `last` or `3,5` against a model of `depth` blocks.
pub fn parse_blocks(spec: &str, depth: usize) -> Result<Vec<usize>> {
    let mut v: Vec<usize> = match spec.trim() {
        "all" => (0..depth).collect(),
        "last" => vec![depth - 1],
        list => list
            .split(',')
            .map(|s| {
                let i: usize = s.trim().parse().with_context(|| {
                    format!("--blocks: `{s}` is not a block index (use all, last or e.g. 3,5)")
                })?;
                anyhow::ensure!(
                    i < depth,
                    "--blocks: block {i} does not exist (the model has blocks 0..={})",
                    depth - 1
                );
                Ok(i)
            })
            .collect::<Result<_>>()?,
    };
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

pub fn run(args: Args) -> Result<()> {
    let ck = args.ckpt.load()?;
    let blocks = parse_blocks(&args.blocks, ck.config.depth)?;
    let (images, shape, mut meta) = read_inputs(&args, &ck.config)?;
    let device = args.device.select()?;
    let model = ck.build(&device)?;
    let out = embed(
        &model,
        &images,
        shape,
        &blocks,
        args.pool.into(),
        !args.no_final_norm,
        args.batch_size,
        &device,
    )?;
    meta.insert("pool".into(), format!("{:?}", args.pool).to_lowercase());
    meta.insert("final_norm".into(), (!args.no_final_norm).to_string());
    st::write(&args.out, &out, meta)?;
    println!(
        "wrote {} ({} images; tensors: {})",
        args.out.display(),
        shape[0],
        out.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// Flat image data, its `[B, C, H, W]` shape and metadata for the output file.
type Inputs = (Vec<f32>, [usize; 4], HashMap<String, String>);

/// Reads the image batch as flat data + `[B, C, H, W]` shape, with metadata for the output.
fn read_inputs(args: &Args, cfg: &crate::model::vit::VitConfig) -> Result<Inputs> {
    let mut meta = HashMap::new();
    if let Some(path) = &args.input_tensor {
        let f = st::read(path)?;
        let t = f.tensors.get("images").with_context(|| {
            format!(
                "{}: no tensor named \"images\" (found: {})",
                path.display(),
                f.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        let [b, c, h, w] = t.shape[..] else {
            bail!(
                "{}: \"images\" has shape {:?}, expected [B, 3, H, W]",
                path.display(),
                t.shape
            )
        };
        check_size(cfg, c, h, w).with_context(|| format!("{}: \"images\"", path.display()))?;
        return Ok((t.data.clone(), [b, c, h, w], meta));
    }
    let dir = args
        .images
        .as_ref()
        .context("give --input-tensor or --images")?;
    let crop = args
        .image_size
        .unwrap_or((cfg.grid[0] * cfg.patch_size) as u32);
    check_size(cfg, 3, crop as usize, crop as usize).context("--image-size")?;
    let resize = (crop as f64 / 0.875).round() as u32;
    let files = images::list_images(dir)?;
    let (data, used, skipped) = images::load_folder(&files, resize, crop);
    for (p, why) in &skipped {
        tracing::warn!("skipped unreadable image {}: {why}", p.display());
    }
    anyhow::ensure!(!used.is_empty(), "no readable images in {}", dir.display());
    let names: Vec<String> = used
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .collect();
    meta.insert("files".into(), serde_json::to_string(&names)?);
    meta.insert("skipped".into(), skipped.len().to_string());
    Ok((data, [used.len(), 3, crop as usize, crop as usize], meta))
}

fn check_size(cfg: &crate::model::vit::VitConfig, c: usize, h: usize, w: usize) -> Result<()> {
    anyhow::ensure!(
        c == cfg.in_chans,
        "has {c} channels, the model expects {}",
        cfg.in_chans
    );
    let p = cfg.patch_size;
    anyhow::ensure!(
        h.is_multiple_of(p) && w.is_multiple_of(p) && h > 0 && w > 0,
        "image size {h}x{w} is not a multiple of the patch size {p}: use e.g. {}x{}",
        (h / p).max(1) * p,
        (w / p).max(1) * p
    );
    Ok(())
}

/// Runs the model batch by batch and gathers pooled features per block and for `final` (the
/// encoder output, or the last block's raw output without the final norm).
#[allow(clippy::too_many_arguments)]
pub fn embed(
    model: &Vit,
    images: &[f32],
    shape: [usize; 4],
    blocks: &[usize],
    how: Pool,
    final_norm: bool,
    batch: usize,
    device: &Device,
) -> Result<TensorMap> {
    let last: Tap = if final_norm {
        None
    } else {
        Some(model.depth() - 1)
    };
    let mut taps: Vec<Tap> = blocks.iter().map(|&b| Some(b)).collect();
    taps.push(last);
    let mut bar = Progress::new("embed", "img", shape[0] as u64, 0);
    let feats = features::extract(
        model,
        features::chunks_of(images, shape, batch),
        &taps,
        how,
        device,
        |n| bar.inc(n as u64),
    )?;
    let n_blocks = blocks.len();
    feats
        .into_iter()
        .enumerate()
        .map(|(k, f)| {
            let name = match f.tap {
                Some(b) if k < n_blocks => format!("block.{b}"),
                _ => "final".to_string(),
            };
            Ok((name, HostTensor::new(vec![shape[0], f.dim], f.data)?))
        })
        .collect()
}
