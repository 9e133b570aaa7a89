//! `mimr bench refine`: img/s and peak memory of one stage-3 MIM-Refiner step (ViT-Ti/4, 2 global
//! views at 32 px + 4 local at 16 px, heads main + blocks 8–10 of size `tiny`, queue 65536).

use crate::data::Batch;
use crate::device::Backend;
use crate::model::vit::VitConfig;
use crate::refine::config::RefineConfig;
use crate::refine::trainer::Trainer;
use crate::rng::Rng;
use anyhow::Result;
use std::time::Instant;

/// `mimr bench refine` options.
#[derive(clap::Args, Debug)]
pub struct RefineArgs {
    /// Burn backend to measure.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Minimum measuring time in seconds (at least 2 measured steps).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured steps first (kernel autotuning and shader compilation happen here on wgpu).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
}

const BASE: &str = include_str!("../../configs/cpu_fashion_mnist.toml");

fn bench_config(batch: usize) -> Result<RefineConfig> {
    let mut v: toml::Value = toml::from_str(BASE)?;
    for o in [
        "heads.size=\"tiny\"",
        "heads.blocks=[10, 9, 8]",
        "heads.main=true",
        "heads.queue_size=65536",
        "data.views.globals.0.size=32",
        "data.views.globals.1.size=32",
        "data.views.locals.size=16",
        "data.views.n_local=4",
        "stage3.topk=20",
    ] {
        if let Some((k, val)) = o.split_once('=') {
            set_path(&mut v, k, val)?;
        }
    }
    let mut cfg: RefineConfig = v.try_into()?;
    cfg.data.batch_size = batch;
    Ok(cfg)
}

/// Like `config::apply_override` but also indexes arrays (`globals.0.size`).
fn set_path(root: &mut toml::Value, key: &str, raw: &str) -> Result<()> {
    let val: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))?
        .remove("v")
        .unwrap_or(toml::Value::Boolean(false));
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = root;
    for p in &parts[..parts.len() - 1] {
        cur = match p.parse::<usize>() {
            Ok(i) => cur.get_mut(i),
            Err(_) => cur.get_mut(*p),
        }
        .ok_or_else(|| anyhow::anyhow!("bench config has no `{key}`"))?;
    }
    if let Some(t) = cur.as_table_mut() {
        t.insert(parts[parts.len() - 1].to_string(), val);
    }
    Ok(())
}

fn synthetic_batch(b: usize, rng: &mut Rng) -> Batch {
    let mut view = |s: usize, n: usize| -> Vec<f32> {
        (0..n * 3 * s * s).map(|_| rng.normal() as f32).collect()
    };
    Batch {
        indices: (0..b).collect(),
        labels: (0..b as i64).map(|i| i % 10).collect(),
        globals: vec![view(32, b), view(32, b)],
        locals: view(16, 4 * b),
        global_size: 32,
        local_size: 16,
        skipped: 0,
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

pub fn run(a: RefineArgs) -> Result<()> {
    let device = a.backend.device()?;
    let vit = VitConfig::prenorm(4, 192, 12, 3, 32);
    let mut t = Trainer::new(
        bench_config(a.batch)?,
        vit.clone(),
        &vit.random_tensors(0),
        device,
    )?;
    let mut rng = Rng::new(1);
    let batch = synthetic_batch(a.batch, &mut rng);
    for i in 0..a.warmup {
        let t0 = Instant::now();
        t.step(&batch, 3, 1e-4)?;
        eprintln!(
            "warm-up step {}: {:.1} s",
            i + 1,
            t0.elapsed().as_secs_f64()
        );
    }
    let (start, mut steps) = (Instant::now(), 0usize);
    while steps < 2 || start.elapsed().as_secs_f64() < a.seconds {
        t.step(&batch, 3, 1e-4)?;
        steps += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    // GPU memory pools keep their pages, so what they reserve after the steps is their peak
    let pool = t.device.memory_pool_usage().map_or(String::new(), |u| {
        format!(
            ", device pool {:.0} MiB reserved",
            u.bytes_reserved as f64 / (1 << 20) as f64
        )
    });
    println!(
        "refine step vit-ti/4 2x32px+4x16px 4 heads(tiny) batch {} backend {}: {:.1} img/s ({:.0} ms/step, {steps} steps), peak RSS {}{pool}",
        a.batch,
        a.backend,
        (steps * a.batch) as f64 / secs,
        1000.0 * secs / steps as f64,
        peak_rss_mib().map_or("n/a".into(), |m| format!("{m:.0} MiB"))
    );
    Ok(())
}
