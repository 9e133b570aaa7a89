//! `mimr bench view`: how long an event written to a run log takes to reach the app — the live
//! path a trainer and the app share (file → `Tail` poll → `LiveRun` channel → repaint request →
//! the UI thread draining it into its `RunModel`), in milliseconds.

use crate::runlog::{Event, Header, PretrainStep, RunKind, RunLog};
use crate::view::{LiveRun, RunModel};
use anyhow::{Context, Result};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// Events to write.
    #[arg(long, default_value_t = 100)]
    pub events: u64,
    /// Milliseconds between two writes (not a divisor of the 200 ms poll, so writes land at
    /// every phase of it).
    #[arg(long, default_value_t = 37)]
    pub interval_ms: u64,
}

/// Writes `events` step events into a fresh run directory while a `LiveRun` follows it and a
/// stand-in UI thread drains on every repaint request; prints the latency distribution.
pub fn run(a: ViewArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mimr-bench-view-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = measure(&dir, &a);
    std::fs::remove_dir_all(&dir).ok();
    let mut ms = result?;
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "event written → in the app's model: {} events, mean {mean:.1} ms, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (poll every {} ms)",
        ms.len(),
        q(0.5),
        q(0.95),
        q(1.0),
        crate::view::POLL_PERIOD.as_millis()
    );
    Ok(())
}

/// The latency of each event, in ms.
fn measure(dir: &std::path::Path, a: &ViewArgs) -> Result<Vec<f64>> {
    // the model keeps at most 50 000 step rows (thinning beyond), which this count relies on
    anyhow::ensure!(
        (1..=50_000).contains(&a.events),
        "--events {} is outside 1..=50000",
        a.events
    );
    let mut log = RunLog::open(dir, None, header())?;
    let (wake, woken) = mpsc::channel::<()>();
    let live = LiveRun::open_dir(dir, move || {
        wake.send(()).ok();
    })?;
    let (start, n) = (Instant::now(), a.events);
    let ui = std::thread::spawn(move || ui_thread(live, woken, n, start));
    let mut written = Vec::new();
    for step in 1..=a.events {
        std::thread::sleep(Duration::from_millis(a.interval_ms));
        written.push(start.elapsed().as_secs_f64());
        log.write(&Event::PretrainStep(PretrainStep {
            step,
            epoch: 0,
            lr: 0.0,
            img_per_s: 0.0,
            time: None,
            loss: 0.0,
        }))?;
    }
    let seen = ui
        .join()
        .map_err(|_| anyhow::anyhow!("the stand-in UI thread panicked"))??;
    Ok(written
        .iter()
        .zip(seen)
        .map(|(w, s)| (s - w) * 1e3)
        .collect())
}

/// Drains on every repaint request until `n` steps arrived; the time each step was first seen.
fn ui_thread(live: LiveRun, woken: mpsc::Receiver<()>, n: u64, start: Instant) -> Result<Vec<f64>> {
    let mut model = RunModel::default();
    let mut seen = Vec::new();
    while (seen.len() as u64) < n {
        woken
            .recv_timeout(Duration::from_secs(10))
            .context("no event arrived within 10 s")?;
        live.drain_into(&mut model);
        let now = start.elapsed().as_secs_f64();
        let steps = model.steps().timeline().steps().len();
        seen.resize(steps.max(seen.len()), now);
    }
    Ok(seen)
}

fn header() -> Header {
    Header {
        version: crate::runlog::VERSION,
        minor: crate::runlog::MINOR,
        kind: RunKind::Pretrain,
        config: Default::default(),
        heads: Vec::new(),
        dataset: "bench".into(),
        device: "none".into(),
        encoder: Default::default(),
    }
}
