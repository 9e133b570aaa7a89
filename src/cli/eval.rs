//! `mimr eval <ckpt> --data … --blocks … --protocols knn,probe,lowshot,cluster`: per-block
//! off-the-shelf feature quality (method.md §5) as a table, JSON, Markdown and a kNN-curve PNG.

use super::embed::parse_blocks;
use super::{CkptArgs, DeviceArgs};
use crate::checkpoint::st;
use crate::data::{self, Dataset, EvalSplit, Split, SplitSource};
use crate::eval::probe;
use crate::eval::protocols::{self, Protocol};
use crate::host::{HostTensor, TensorMap};
use crate::model::features::{self, ImageChunk, Tap};
use crate::model::vit::Pool;
use crate::progress::Progress;
use anyhow::{Context, Result, ensure};
use burn::tensor::Device;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub ckpt: CkptArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Labelled dataset (image folder, CIFAR, IDX). Its own train/test split is used when it has
    /// one; otherwise a seeded, stratified part is held out as test (`--test-fraction`).
    #[arg(long)]
    pub data: PathBuf,
    /// Share of each class held out as test queries when the dataset has no train/test split.
    #[arg(long, default_value_t = data::eval_split::DEFAULT_TEST_FRACTION)]
    pub test_fraction: f64,
    /// Seed of that hold-out.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Blocks: all, last, or 0-indexed list (raw block outputs, no final norm, method.md §1.4).
    #[arg(long, default_value = "all")]
    pub blocks: String,
    /// Token pooling: cls, mean (patch tokens) or cls-mean (method.md §1.4).
    #[arg(long, value_enum, default_value = "cls")]
    pub pool: super::embed::PoolArg,
    /// Also evaluate the encoder output (after the final LayerNorm of pre-norm models) as `final`.
    #[arg(long)]
    pub final_norm: bool,
    /// Comma list of knn, probe, lowshot, cluster.
    #[arg(long, default_value = "knn")]
    pub protocols: String,
    /// Use at most this many train / test samples (spread evenly over the split).
    #[arg(long, default_value_t = 10000)]
    pub train_limit: usize,
    #[arg(long, default_value_t = 2000)]
    pub test_limit: usize,
    /// Centre-crop size (default: the checkpoint's native size).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Per-channel mean of the eval transform's normalisation (default ImageNet's): give the
    /// values the model was trained with, e.g. its config's `data.views.mean`.
    #[arg(long, value_delimiter = ',', default_values_t = data::IMAGENET_MEAN)]
    pub mean: Vec<f32>,
    /// Per-channel std of the normalisation (default ImageNet's).
    #[arg(long, value_delimiter = ',', default_values_t = data::IMAGENET_STD)]
    pub std: Vec<f32>,
    /// Linear-probe epochs (method.md §5.2 uses 50).
    #[arg(long, default_value_t = 50)]
    pub probe_epochs: usize,
    /// Output folder for results.json, results.md, knn_per_block.png and the feature cache.
    #[arg(long)]
    pub out: PathBuf,
}

/// Features of one split for every requested block (CLS token, raw block output).
struct Split2 {
    feats: Vec<(String, Vec<f32>)>,
    labels: Vec<u32>,
    dim: usize,
    /// Unreadable samples skipped.
    skipped: usize,
}

pub fn run(args: Args) -> Result<()> {
    let done = evaluate(&args)?;
    println!("{}", write_reports(&args, &done)?);
    Ok(())
}

/// What [`evaluate`] measured: one JSON row per block (`{"block": "3", "knn": {"k10": …}, …}`).
pub struct Evaluated {
    pub rows: Vec<Value>,
    source: SplitSource,
    counts: Counts,
}

/// Embeds both splits (cached in `args.out`) and scores every requested block; writes no report.
pub fn evaluate(args: &Args) -> Result<Evaluated> {
    let protos = args
        .protocols
        .split(',')
        .map(|p| p.parse::<Protocol>())
        .collect::<Result<Vec<_>>>()
        .context("--protocols")?;
    let ck = args.ckpt.load()?;
    let blocks = parse_blocks(&args.blocks, ck.config.depth)?;
    let device = args.device.select()?;
    let model = ck.build(&device)?;
    let size = args
        .image_size
        .unwrap_or((ck.config.grid[0] * ck.config.patch_size) as u32);
    anyhow::ensure!(
        (size as usize).is_multiple_of(ck.config.patch_size),
        "--image-size {size} is not a multiple of the patch size {}",
        ck.config.patch_size
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let split = EvalSplit::open(&args.data, args.test_fraction, args.split_seed)?;
    eprintln!("{}", split.describe());
    let key = cache_key(args, &blocks, size)?;
    let spec = FeatureSpec {
        blocks: &blocks,
        pool: args.pool.into(),
        final_norm: args.final_norm,
        size,
        norm: normalisation(args)?,
    };
    let extract = |ds: &dyn Dataset, split, limit| {
        let part = Part { ds, split, limit };
        features(&model, &part, &spec, &device, &args.out, &key)
    };
    let train = extract(split.train.as_ref(), Split::Train, args.train_limit)?;
    let test = extract(split.test.as_ref(), Split::Test, args.test_limit)?;
    let n_classes = protocols::n_classes(&train.labels, &test.labels);
    anyhow::ensure!(
        n_classes >= 2,
        "{}: needs labels of at least 2 classes",
        args.data.display()
    );
    let opts = protocols::Options {
        probe: probe::ProbeConfig {
            epochs: args.probe_epochs,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut rows = Vec::new();
    for ((b, xtr), (_, xte)) in train.feats.iter().zip(&test.feats) {
        let (d, (ytr, yte)) = (train.dim, (&train.labels, &test.labels));
        let f = |x, labels| protocols::Features { x, labels, dim: d };
        let res =
            protocols::evaluate(f(xtr, ytr), f(xte, yte), n_classes, &protos, &opts, &device)?;
        let mut r = json!({"block": b});
        if let (Some(r), Value::Object(res)) = (r.as_object_mut(), res) {
            r.extend(res);
        }
        eprintln!("block {b}: {r}");
        rows.push(r);
    }
    let counts = Counts {
        train: train.labels.len(),
        test: test.labels.len(),
        skipped: train.skipped + test.skipped,
    };
    Ok(Evaluated {
        rows,
        source: split.source,
        counts,
    })
}

/// Samples evaluated per part, and unreadable ones skipped.
struct Counts {
    train: usize,
    test: usize,
    skipped: usize,
}

/// One part to embed: its samples, which split it is (for names), at most how many to use.
struct Part<'a> {
    ds: &'a dyn Dataset,
    split: Split,
    limit: usize,
}

/// Part of every feature-cache key; 2: the Pillow-exact eval transform (caches made before it
/// hold features of other pixels and are not reused); 3: held-out splits, skipped samples.
const FEATURE_VERSION: u32 = 3;

fn cache_key(args: &Args, blocks: &[usize], size: u32) -> Result<String> {
    let bytes = std::fs::read(&args.ckpt.checkpoint)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // FEATURE_VERSION: bump when the eval transform or the model's numerics change
    let spec = format!(
        "{FEATURE_VERSION}|{}|{blocks:?}|{size}|{}|{}|{:?}|{}|{}|{}|{:?}|{:?}",
        args.data.display(),
        args.train_limit,
        args.test_limit,
        args.pool,
        args.final_norm,
        args.test_fraction,
        args.split_seed,
        args.mean,
        args.std
    );
    for b in bytes.iter().chain(spec.as_bytes()) {
        h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

/// Which features to extract.
struct FeatureSpec<'a> {
    blocks: &'a [usize],
    pool: Pool,
    final_norm: bool,
    size: u32,
    /// Per-channel mean and std of the eval transform.
    norm: [[f32; 3]; 2],
}

/// `--mean` and `--std` as three values each, the std positive.
fn normalisation(args: &Args) -> Result<[[f32; 3]; 2]> {
    let three = |v: &[f32], name: &str| -> Result<[f32; 3]> {
        let a: [f32; 3] = v
            .try_into()
            .map_err(|_| anyhow::anyhow!("--{name} takes 3 comma-separated values, got {v:?}"))?;
        ensure!(
            a.iter().all(|x| x.is_finite()),
            "--{name} {v:?}: values must be finite"
        );
        Ok(a)
    };
    let (mean, std) = (three(&args.mean, "mean")?, three(&args.std, "std")?);
    ensure!(
        std.iter().all(|&s| s > 0.0),
        "--std {std:?}: values must be > 0"
    );
    Ok([mean, std])
}

/// Extracts (or reads back from the cache in `out`) the pooled features of the blocks (and of
/// the final output with `final_norm`), stored as `feat.<block>` / `feat.final`.
fn features(
    model: &crate::model::vit::Vit,
    part: &Part,
    spec: &FeatureSpec,
    device: &Device,
    out: &Path,
    key: &str,
) -> Result<Split2> {
    let mut names: Vec<String> = spec.blocks.iter().map(|b| b.to_string()).collect();
    if spec.final_norm {
        names.push("final".into());
    }
    anyhow::ensure!(!names.is_empty(), "no blocks selected");
    let cache = out.join(format!("features-{key}-{}.safetensors", part.split.name()));
    let map = if cache.exists() {
        st::read(&cache)?.tensors
    } else {
        let map = extract(model, part, spec, &names, device)?;
        st::write(&cache, &map, Default::default())?;
        map
    };
    let labels: Vec<u32> = map
        .get("labels")
        .context("cache lacks labels")?
        .data
        .iter()
        .map(|v| *v as u32)
        .collect();
    let feats = names
        .iter()
        .map(|b| {
            let t = map
                .get(&format!("feat.{b}"))
                .context("feature cache incomplete: delete it")?;
            Ok((b.clone(), t.data.clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    let dim = map
        .get(&format!("feat.{}", names[0]))
        .map_or(0, |t| t.shape[1]);
    let skipped = map.get("skipped").and_then(|t| t.data.first()).copied();
    Ok(Split2 {
        feats,
        labels,
        dim,
        skipped: skipped.unwrap_or(0.0) as usize,
    })
}

/// Runs the encoder over `limit` samples of the part (spread evenly) with the eval transform,
/// skipping and counting unreadable ones.
fn extract(
    model: &crate::model::vit::Vit,
    part: &Part,
    spec: &FeatureSpec,
    names: &[String],
    device: &Device,
) -> Result<TensorMap> {
    let ds = part.ds;
    let (n, size) = (part.limit.min(ds.len()), spec.size);
    let s = size as usize;
    let (mut labels, mut skipped) = (Vec::with_capacity(n), 0);
    let resize = (size as f64 / 0.875).round() as u32;
    let chunks = (0..n).step_by(64).map(|start| {
        let m = 64.min(n - start);
        let mut x = Vec::with_capacity(m * 3 * s * s);
        for i in start..start + m {
            let Some(sample) = data::get_or_skip(ds, i * ds.len() / n, &mut skipped) else {
                continue;
            };
            let label = sample.label.with_context(|| {
                format!("{}: eval needs labels (class subfolders)", ds.describe())
            })?;
            labels.push(label as f32);
            let [mean, std] = spec.norm;
            x.extend(data::views::eval_view_with(
                &sample.image,
                resize,
                size,
                mean,
                std,
            ));
        }
        Ok(ImageChunk {
            shape: [x.len() / (3 * s * s), 3, s, s],
            data: x,
        })
    });
    let mut taps: Vec<Tap> = spec.blocks.iter().map(|&b| Some(b)).collect();
    if spec.final_norm {
        taps.push(None);
    }
    let label = format!("features ({})", part.split.name());
    let mut bar = Progress::new(&label, "img", n as u64, 0);
    let feats = features::extract(model, chunks, &taps, spec.pool, device, |m| {
        bar.inc(m as u64)
    })?;
    drop(bar);
    let kept = labels.len();
    ensure!(
        kept > 0,
        "{}: none of the {n} samples chosen could be read",
        ds.describe()
    );
    if skipped > 0 {
        eprintln!(
            "{}: skipped {skipped} unreadable of {n} samples",
            part.split.name()
        );
    }
    let mut map = TensorMap::new();
    for (name, f) in names.iter().zip(feats) {
        map.insert(
            format!("feat.{name}"),
            HostTensor::new(vec![kept, f.dim], f.data)?,
        );
    }
    map.insert("labels".into(), HostTensor::new(vec![kept], labels)?);
    map.insert(
        "skipped".into(),
        HostTensor::new(vec![1], vec![skipped as f32])?,
    );
    Ok(map)
}

/// Writes results.md, results.json and knn_per_block.png into `args.out`; returns the Markdown.
pub fn write_reports(args: &Args, done: &Evaluated) -> Result<String> {
    let (rows, source, n) = (&done.rows, &done.source, &done.counts);
    let cols: Vec<(String, Vec<&str>)> = vec![
        ("knn".into(), vec!["k1", "k10", "k20"]),
        ("probe".into(), vec!["best_accuracy"]),
        ("lowshot".into(), vec!["1shot", "2shot", "5shot"]),
        (
            "cluster".into(),
            vec!["acc", "nmi", "ami", "ari", "silhouette", "davies_bouldin"],
        ),
    ];
    let present: Vec<(String, &str)> = cols
        .iter()
        .filter(|(p, _)| rows.first().is_some_and(|r| r.get(p).is_some()))
        .flat_map(|(p, ks)| ks.iter().map(move |k| (p.clone(), *k)))
        .collect();
    let mut md = format!(
        "# mimr eval\n\ncheckpoint `{}`, data `{}` ({} train / {} test{}; {})\n\n| block |",
        args.ckpt.checkpoint.display(),
        args.data.display(),
        n.train,
        n.test,
        if n.skipped > 0 {
            format!(", {} unreadable skipped", n.skipped)
        } else {
            String::new()
        },
        match source {
            SplitSource::Dataset => "the dataset's split".to_string(),
            SplitSource::Stratified {
                test_fraction,
                seed,
            } => format!("stratified hold-out of {test_fraction} with seed {seed}"),
        }
    );
    for (p, k) in &present {
        md += &format!(" {p} {k} |");
    }
    md += &format!("\n|---|{}\n", "---|".repeat(present.len()));
    for r in rows {
        md += &format!("| {} |", r["block"].as_str().unwrap_or("?"));
        for (p, k) in &present {
            md += &r[p][k]
                .as_f64()
                .map_or(" – |".to_string(), |v| format!(" {v:.4} |"));
        }
        md += "\n";
    }
    crate::fsutil::write_atomic(&args.out.join("results.md"), md.as_bytes())?;
    crate::fsutil::write_atomic(
        &args.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "checkpoint": args.ckpt.checkpoint,
            "data": args.data,
            "split": source,
            "samples": {"train": n.train, "test": n.test, "skipped": n.skipped},
            "normalisation": {"mean": args.mean, "std": args.std},
            "blocks": rows
        }))?
        .as_bytes(),
    )?;
    let curve: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r["block"].as_str()?.parse::<f64>().ok()?,
                r["knn"]["k10"].as_f64()?,
            ))
        })
        .collect();
    if !curve.is_empty() {
        plot_curve(&curve, &args.out.join("knn_per_block.png"))?;
    }
    Ok(md)
}

/// A minimal line plot (x = block, y = kNN accuracy in [0, 1], grid lines every 0.1).
fn plot_curve(points: &[(f64, f64)], path: &Path) -> Result<()> {
    let (w, h, m) = (640u32, 360u32, 30u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let xmax = points.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let px = |x: f64| m + ((x / xmax) * (w - 2 * m) as f64) as u32;
    let py = |y: f64| h - m - ((y.clamp(0.0, 1.0)) * (h - 2 * m) as f64) as u32;
    for g in 0..=10 {
        let y = py(g as f64 / 10.0);
        for x in m..w - m {
            img.put_pixel(
                x,
                y,
                image::Rgb(if g % 5 == 0 {
                    [150, 150, 150]
                } else {
                    [225, 225, 225]
                }),
            );
        }
    }
    for pair in points.windows(2) {
        let steps = 200;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (
                pair[0].0 + t * (pair[1].0 - pair[0].0),
                pair[0].1 + t * (pair[1].1 - pair[0].1),
            );
            img.put_pixel(
                px(x).min(w - 1),
                py(y).min(h - 1),
                image::Rgb([31, 119, 180]),
            );
        }
    }
    for &(x, y) in points {
        let (cx, cy) = (px(x) as i64, py(y) as i64);
        for dx in -3..=3 {
            for dy in -3..=3 {
                let (xx, yy) = (
                    (cx + dx).clamp(0, w as i64 - 1) as u32,
                    (cy + dy).clamp(0, h as i64 - 1) as u32,
                );
                img.put_pixel(xx, yy, image::Rgb([214, 39, 40]));
            }
        }
    }
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    crate::fsutil::write_atomic(path, &png)
}
