//! `mimr bench forward`: ViT forward (and forward+backward) throughput of a preset on a chosen
//! backend, reported in img/s; the figures in BENCHMARKS.md come from this command.

use super::bench_refine::{self, RefineArgs};
use crate::device::Backend;
use crate::model::vit::{Taps, Vit, VitConfig};
use anyhow::Result;
use burn::tensor::{Distribution, Tensor};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// ViT forward throughput of a randomly initialised preset.
    Forward(ForwardArgs),
    /// Multi-crop loader throughput (decode + augment + batch) in views/s.
    Data(DataArgs),
    /// kNN classification of random features (train × test × dim, 10 classes, k = 10).
    Knn(KnnArgs),
    /// One stage-3 refinement step (ViT-Ti/4, 2×32 px + 4×16 px views, 4 tiny heads, batch 64).
    Refine(RefineArgs),
    /// Latency of the app's live path: an event written to a run log until it is in the app's
    /// run model.
    View(super::bench_view::ViewArgs),
    /// The embedding map's frame time at N points in the app window (needs a display), or
    /// with --project N the PCA / k-means / t-SNE times.
    Map(super::bench_map::MapArgs),
}

#[derive(clap::Args, Debug)]
pub struct KnnArgs {
    #[arg(long, default_value_t = 50000)]
    pub train: usize,
    #[arg(long, default_value_t = 10000)]
    pub test: usize,
    #[arg(long, default_value_t = 256)]
    pub dim: usize,
    /// Burn backend to measure.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Test rows per similarity chunk.
    #[arg(long, default_value_t = 1024)]
    pub chunk: usize,
}

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(flatten)]
    pub data: super::data::DatasetArgs,
    #[command(flatten)]
    pub views: super::data::ViewArgs,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Minimum measuring time in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    /// Preset: debug, tiny, small, base, large, huge, 2b.
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Override the preset's patch size (e.g. 4 for ViT-Ti/4 at 32 px).
    #[arg(long)]
    pub patch: Option<usize>,
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Burn backend to measure.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Time forward + backward (sum of outputs) instead of forward only.
    #[arg(long)]
    pub backward: bool,
    /// Minimum measuring time in seconds (after 2 warm-up iterations).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

pub fn run(args: Args) -> Result<()> {
    match args.what {
        What::Forward(a) => forward(a),
        What::Data(a) => data(a),
        What::Refine(a) => bench_refine::run(a),
        What::Knn(a) => knn(a),
        What::View(a) => super::bench_view::run(a),
        What::Map(a) => super::bench_map::run(a),
    }
}

fn data(a: DataArgs) -> Result<()> {
    let ds: std::sync::Arc<dyn crate::data::Dataset> = a.data.open()?.into();
    let cfg = a.views.config()?;
    let views_per_image = cfg.n_views();
    let workers = a
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let loader = crate::data::Loader::new(ds.clone(), cfg, a.batch, 0, workers, 4)?;
    let (start, mut images, mut epoch) = (Instant::now(), 0usize, 0u64);
    'outer: loop {
        for batch in loader.epoch(epoch) {
            images += batch?.len();
            if start.elapsed().as_secs_f64() >= a.seconds {
                break 'outer;
            }
        }
        epoch += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "data {} {}px+{}x{}px batch {} workers {workers}: {:.1} img/s = {:.1} views/s ({images} images, {secs:.2} s)",
        ds.describe(),
        a.views.global_size,
        a.views.n_local,
        a.views.local_size,
        a.batch,
        images as f64 / secs,
        (images * views_per_image) as f64 / secs
    );
    Ok(())
}

fn knn(a: KnnArgs) -> Result<()> {
    let device = a.backend.device()?;
    let mut rng = crate::rng::Rng::new(0);
    let mut feats = |n: usize| -> (Vec<f32>, Vec<u32>) {
        let labels: Vec<u32> = (0..n).map(|_| rng.below(10) as u32).collect();
        // class-dependent mean so the task is learnable and predictions are non-trivial
        let x = labels
            .iter()
            .flat_map(|&l| {
                (0..a.dim)
                    .map(|j| if j % 10 == l as usize { 0.5 } else { 0.0 })
                    .collect::<Vec<f32>>()
            })
            .map(|m| m + rng.normal() as f32)
            .collect();
        (x, labels)
    };
    let (xtr, ytr) = feats(a.train);
    let (xte, yte) = feats(a.test);
    let start = Instant::now();
    let acc = crate::eval::knn::knn_accuracy(
        &xtr,
        &ytr,
        &xte,
        &yte,
        a.dim,
        10,
        &[10],
        0.07,
        &device,
        a.chunk,
    )?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "knn {} train x {} test x {}d k=10 backend {}: {secs:.2} s ({:.0} queries/s), accuracy {:.4}",
        a.train,
        a.test,
        a.dim,
        a.backend,
        a.test as f64 / secs,
        acc.first().map_or(0.0, |x| x.1)
    );
    Ok(())
}

fn forward(a: ForwardArgs) -> Result<()> {
    let mut cfg = VitConfig::preset(&a.preset, a.image_size)?;
    if let Some(p) = a.patch {
        cfg = VitConfig::prenorm(p, cfg.dim, cfg.depth, cfg.heads, a.image_size);
    }
    anyhow::ensure!(
        a.image_size.is_multiple_of(cfg.patch_size),
        "--image-size must be a multiple of the patch size {}",
        cfg.patch_size
    );
    let base = a.backend.device()?;
    let device = if a.backward { base.autodiff() } else { base };
    let model = Vit::from_tensors(&cfg, &cfg.random_tensors(0), &device)?;
    let taps = Taps {
        blocks: vec![],
        final_output: true,
    };
    let x = Tensor::<4>::random(
        [a.batch, 3, a.image_size, a.image_size],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let step = || -> Result<()> {
        let out = model
            .forward(x.clone(), &taps)
            .final_output
            .expect("final requested");
        if a.backward {
            let _grads = out.sum().backward();
        } else {
            let _ = out.sum().into_data();
        }
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
        Ok(())
    };
    for _ in 0..2 {
        step()?;
    }
    let (start, mut iters) = (Instant::now(), 0usize);
    while iters < 3 || start.elapsed().as_secs_f64() < a.seconds {
        step()?;
        iters += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let ips = (iters * a.batch) as f64 / secs;
    println!(
        "vit-{}/{} {}px batch {} backend {} {}: {:.1} img/s ({iters} iters, {:.2} s, {} threads)",
        a.preset,
        cfg.patch_size,
        a.image_size,
        a.batch,
        a.backend,
        if a.backward { "fwd+bwd" } else { "fwd" },
        ips,
        secs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}
