//! `mimr bench map`: the embedding map's frame time at N points in the real app window (wgpu
//! renderer, no vsync; each size in its own process), and PCA / k-means / t-SNE times for N points.

use crate::app::frame_bench::FrameTimes;
use crate::runlog::{Event, Header, RunKind, RunLog, Snapshot};
use crate::view::project::{self, Features, TsneConfig};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct MapArgs {
    /// Point counts to draw, each measured in its own window (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000,50000,200000")]
    pub points: Vec<usize>,
    /// Frames timed per size (after the map is drawn).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub frames: u64,
    /// Instead of frames: time PCA, k-means (k = 10) and t-SNE on this many points.
    #[arg(long)]
    pub project: Option<usize>,
    /// Feature width of the synthetic points.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Internal: measure one size in this process.
    #[arg(long, hide = true)]
    pub one: bool,
}

pub fn run(a: MapArgs) -> Result<()> {
    if let Some(n) = a.project {
        return projections(n, a.dim);
    }
    if a.one {
        let &[n] = a.points.as_slice() else {
            bail!("--one measures exactly one --points value");
        };
        return one_window(n, a.frames as usize, a.dim);
    }
    let exe = std::env::current_exe().context("cannot find the mimr executable")?;
    for &n in &a.points {
        // winit allows one event loop per process: one process per size
        let status = std::process::Command::new(&exe)
            .args(["bench", "map", "--one", "--points", &n.to_string()])
            .args([
                "--frames",
                &a.frames.to_string(),
                "--dim",
                &a.dim.to_string(),
            ])
            .status()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !status.success() {
            bail!("the {n}-point window failed ({status})");
        }
    }
    Ok(())
}

/// `n` points in ten Gaussian clusters of width `dim` (deterministic).
fn blobs(n: usize, dim: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = crate::rng::Rng::new(7);
    let centres: Vec<f32> = (0..10 * dim).map(|_| 4.0 * rng.normal() as f32).collect();
    let mut x = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 10;
        x.extend((0..dim).map(|d| centres[c * dim + d] + rng.normal() as f32));
        labels.push(c as f32);
    }
    (x, labels)
}

/// Writes a run directory with one snapshot of `n` points (block `main`).
fn synthetic_run(dir: &Path, n: usize, dim: usize) -> Result<()> {
    let (x, labels) = blobs(n, dim);
    let mut map = crate::host::TensorMap::new();
    map.insert(
        "main".into(),
        crate::host::HostTensor::new(vec![n, dim], x)?,
    );
    map.insert(
        "labels".into(),
        crate::host::HostTensor::new(vec![n], labels)?,
    );
    let index = (0..n).map(|i| i as f32).collect();
    map.insert(
        "index".into(),
        crate::host::HostTensor::new(vec![n], index)?,
    );
    let file = "snapshots/step-000000001.safetensors";
    std::fs::create_dir_all(dir.join("snapshots"))?;
    crate::checkpoint::st::write(&dir.join(file), &map, Default::default())?;
    let header = Header {
        version: crate::runlog::VERSION,
        minor: crate::runlog::MINOR,
        kind: RunKind::Refine,
        config: Default::default(),
        heads: vec!["main".into()],
        dataset: format!("bench: {n} synthetic points"),
        device: "none".into(),
        encoder: Default::default(),
    };
    let mut log = RunLog::open(dir, None, header)?;
    log.write(&Event::Snapshot(Snapshot {
        step: 1,
        file: file.into(),
        samples: n,
        skipped: 0,
    }))
}

fn one_window(n: usize, frames: usize, dim: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mimr-bench-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result =
        synthetic_run(&dir, n, dim).and_then(|_| crate::app::frame_bench::measure(&dir, n, frames));
    std::fs::remove_dir_all(&dir).ok();
    report(n, &result?);
    Ok(())
}

fn report(n: usize, t: &FrameTimes) {
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        (s.iter().sum::<f64>() / s.len() as f64, q(0.5), q(0.95))
    };
    let (mean, p50, p95) = stats(&t.intervals_ms);
    let (ui_mean, _, _) = stats(&t.ui_ms);
    println!(
        "map {n} points: frame {mean:.1} ms mean ({:.0} fps), p50 {p50:.1} ms, p95 {p95:.1} ms; UI code {ui_mean:.1} ms of it; {} frames on {}",
        1e3 / mean,
        t.intervals_ms.len(),
        t.adapter
    );
}

fn projections(n: usize, dim: usize) -> Result<()> {
    let (x, _) = blobs(n, dim);
    let f = Features::new(n, dim, x).map_err(anyhow::Error::msg)?;
    let time = |name: &str, run: &mut dyn FnMut()| {
        let t = Instant::now();
        run();
        println!(
            "{name} of {n} points × {dim}: {:.2} s",
            t.elapsed().as_secs_f64()
        );
    };
    time("PCA", &mut || {
        project::pca2(&f);
    });
    time("k-means (k = 10, ≤ 100 iterations)", &mut || {
        project::kmeans(&f, 10, 0, 100);
    });
    let mut outcome = Ok(Vec::new());
    time("t-SNE (Barnes-Hut, 750 iterations)", &mut || {
        outcome = project::tsne(&f, &TsneConfig::default(), |_, _| true);
    });
    outcome
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("t-SNE: {e}"))
}
