//! `mimr bench map`'s probe in the real window: once the map shows every point, frames are drawn
//! back to back (no vsync) and the time between them recorded (UI, tessellation, wgpu, present).

use super::{Launch, MimrApp, Tab};
use eframe::egui::{self, Ui};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the map may take to appear before the measurement fails.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// What a measurement found.
#[derive(Clone, Debug, Default)]
pub struct FrameTimes {
    /// Start of one frame to the start of the next, ms.
    pub intervals_ms: Vec<f64>,
    /// Time in the app's UI code per frame, ms.
    pub ui_ms: Vec<f64>,
    /// The wgpu adapter that rendered.
    pub adapter: String,
}

type Outcome = Arc<Mutex<Option<Result<FrameTimes, String>>>>;

/// The app with a stopwatch around each frame.
struct Probe {
    app: MimrApp,
    points: usize,
    frames: usize,
    start: Instant,
    last: Option<Instant>,
    times: FrameTimes,
    outcome: Outcome,
}

impl eframe::App for Probe {
    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        let begin = Instant::now();
        self.app.frame(ui);
        let ui_ms = begin.elapsed().as_secs_f64() * 1e3;
        ui.ctx().request_repaint();
        let ready = (self.app.runs().first()).is_some_and(|r| r.map.drawn().len() == self.points);
        if !ready {
            if self.start.elapsed() > READY_TIMEOUT {
                self.finish(
                    ui.ctx(),
                    Err(format!("the map did not show {} points", self.points)),
                );
            }
            return;
        }
        if let Some(last) = self.last {
            self.times
                .intervals_ms
                .push((begin - last).as_secs_f64() * 1e3);
            self.times.ui_ms.push(ui_ms);
        }
        self.last = Some(begin);
        if self.times.intervals_ms.len() >= self.frames {
            if let Some(rs) = frame.wgpu_render_state() {
                let info = rs.adapter.get_info();
                self.times.adapter = format!("{} ({:?})", info.name, info.backend);
            }
            let times = std::mem::take(&mut self.times);
            self.finish(ui.ctx(), Ok(times));
        }
    }
}

impl Probe {
    fn finish(&mut self, ctx: &egui::Context, result: Result<FrameTimes, String>) {
        if let Ok(mut o) = self.outcome.lock() {
            o.get_or_insert(result);
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

/// Opens the run `dir` on the map tab and times `frames` frames once `points` points show.
pub fn measure(dir: &Path, points: usize, frames: usize) -> anyhow::Result<FrameTimes> {
    let mut options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("mimr bench map")
            .with_inner_size([1280.0, 820.0]),
        // a private store: the user's saved layout and settings play no part
        persistence_path: Some(dir.join("app-state.ron")),
        ..Default::default()
    };
    options.wgpu_options.surface.present_mode = eframe::wgpu::PresentMode::AutoNoVsync;
    let outcome = Outcome::default();
    let shared = outcome.clone();
    let launch = Launch {
        dirs: vec![dir.to_path_buf()],
        tab: Some(Tab::Map),
        ..Default::default()
    };
    eframe::run_native(
        "mimr-bench-map",
        options,
        Box::new(move |cc| {
            Ok(Box::new(Probe {
                app: MimrApp::new(cc, launch, Default::default()),
                points,
                frames,
                start: Instant::now(),
                last: None,
                times: FrameTimes::default(),
                outcome: shared,
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the bench window (needs a display): {e}"))?;
    let result = outcome.lock().map(|o| o.clone()).unwrap_or(None);
    match result {
        Some(r) => r.map_err(anyhow::Error::msg),
        None => anyhow::bail!("the window closed before the measurement ended"),
    }
}
