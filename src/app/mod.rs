//! The desktop app (eframe/egui on wgpu): open runs live or finished, per-layer curves, the blocks ×
//! steps heat map, the embedding map and its neighbour inspector; all fed off the UI thread.

pub mod curves;
pub mod frame_bench;
pub mod inspector;
pub mod jobs;
pub mod layers;
pub mod map;
pub mod palette;
pub mod points;
pub mod recon;
pub mod runs;
pub mod start;
pub mod status;
pub mod thumbs;

use curves::CurveSettings;
use eframe::egui::{self, Key, Ui};
use layers::LayerSettings;
use map::MapSettings;
use runs::OpenRun;
use std::path::PathBuf;

/// The tabs of the central panel.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum Tab {
    #[default]
    Curves,
    Layers,
    /// The embedding map and nearest-neighbour inspector.
    Map,
}

impl Tab {
    const ALL: [Tab; 3] = [Tab::Curves, Tab::Layers, Tab::Map];

    fn label(self) -> &'static str {
        match self {
            Tab::Curves => "Curves",
            Tab::Layers => "Layers",
            Tab::Map => "Map",
        }
    }
}

/// What persists between launches (eframe storage); fields added later default.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Saved {
    run_dirs: Vec<PathBuf>,
    tab: Tab,
    curves: CurveSettings,
    layers: LayerSettings,
    map: MapSettings,
}

/// The app's state.
pub struct MimrApp {
    runs: Vec<OpenRun>,
    selected: usize,
    tab: Tab,
    curves: CurveSettings,
    curve_view: curves::CurvesView,
    layers: LayerSettings,
    map: MapSettings,
    /// The "open a run folder" field.
    open_path: String,
    /// Failures to open runs (typed, or saved from an earlier session), shown under the field.
    open_errors: Vec<String>,
    ctx: Option<egui::Context>,
    screenshot: Option<Screenshot>,
    /// The start screen (no run open, or "New...") and its forms.
    start: start::StartScreen,
    /// Refinements and inspections running in this process.
    jobs: jobs::Jobs,
}

/// `mimr view --screenshot`: once the runs are read, save the window as a PNG and close.
struct Screenshot {
    path: PathBuf,
    start: std::time::Instant,
    asked: bool,
    outcome: ShotOutcome,
}

/// Whether the screenshot was saved (None: not yet), shared with `run_native`.
type ShotOutcome = std::sync::Arc<std::sync::Mutex<Option<Result<(), String>>>>;

/// Seconds after which a screenshot that never arrived fails the launch.
const SHOT_TIMEOUT_S: f32 = 30.0;

/// How the native window starts.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Run directories to open (none: the last session's).
    pub dirs: Vec<PathBuf>,
    /// The tab to show first (default: the last session's).
    pub tab: Option<Tab>,
    /// Save a screenshot here once the runs are read, then close.
    pub screenshot: Option<PathBuf>,
    /// Select this sample in the first run's map (`mimr view --select`).
    pub select: Option<usize>,
    /// Start this checkpoint inspection at launch (`mimr app --inspect`).
    pub inspect: Option<crate::inspect::InspectSpec>,
    /// Start (or resume) this refinement at launch and follow it (`mimr demo`); the last
    /// session's runs are then not reopened.
    pub refine: Option<Box<crate::refine::config::RefineConfig>>,
}

impl MimrApp {
    /// The app for eframe: opens `launch.dirs`, or the runs of the last session when none are
    /// given.
    pub fn new(cc: &eframe::CreationContext<'_>, launch: Launch, outcome: ShotOutcome) -> Self {
        let saved: Saved = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        let mut app = Self::with_runs(Vec::new());
        app.ctx = Some(cc.egui_ctx.clone());
        if let Some(rs) = &cc.wgpu_render_state {
            points::install(rs);
        }
        (app.tab, app.curves, app.layers, app.map) =
            (saved.tab, saved.curves, saved.layers, saved.map);
        app.tab = launch.tab.unwrap_or(app.tab);
        let dirs = if launch.dirs.is_empty() && launch.refine.is_none() {
            saved.run_dirs
        } else {
            launch.dirs
        };
        for dir in dirs {
            app.open_dir(dir);
        }
        if let Some(run) = app.runs.first_mut() {
            run.map.selected = launch.select;
        }
        if let Some(req) = launch.inspect {
            app.start_inspect(req, &cc.egui_ctx);
        }
        if let Some(cfg) = launch.refine {
            app.start_refine_at_launch(*cfg, &cc.egui_ctx);
        }
        app.screenshot = launch.screenshot.map(|path| Screenshot {
            path,
            start: std::time::Instant::now(),
            asked: false,
            outcome,
        });
        app
    }

    /// The app over runs already open (tests and the web build feed theirs this way).
    pub fn with_runs(runs: Vec<OpenRun>) -> Self {
        Self {
            runs,
            selected: 0,
            tab: Tab::default(),
            curves: CurveSettings::default(),
            curve_view: curves::CurvesView::default(),
            layers: LayerSettings::default(),
            map: MapSettings::default(),
            open_path: String::new(),
            open_errors: Vec::new(),
            ctx: None,
            screenshot: None,
            start: start::StartScreen::default(),
            jobs: jobs::Jobs::default(),
        }
    }

    /// The runs open, in the runs panel's order.
    pub fn runs(&self) -> &[OpenRun] {
        &self.runs
    }

    /// The map's settings (projection, colouring, k).
    pub fn map_settings(&self) -> &MapSettings {
        &self.map
    }

    /// How many reconstructions images the Curves tab has read and decoded so far.
    pub fn reconstruction_loads(&self) -> u64 {
        self.curve_view.recon.loads()
    }

    /// The tab shown.
    pub fn tab(&self) -> Tab {
        self.tab
    }

    /// Follows the run directory `dir` (selected); a failure is shown, not raised.
    pub fn open_dir(&mut self, dir: PathBuf) {
        // absolute, so a saved session reopens from any working directory and `./a` is `a`
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        if let Some(i) = self.runs.iter().position(|r| r.dir.as_ref() == Some(&dir)) {
            self.selected = i;
            return;
        }
        if !dir.is_dir() {
            self.open_errors.push(format!(
                "{} is not a run directory (missing, or a file): give the folder `mimr refine` writes (run.dir)",
                dir.display()
            ));
            return;
        }
        let ctx = self.ctx.clone();
        let repaint = move || {
            if let Some(c) = &ctx {
                c.request_repaint();
            }
        };
        match OpenRun::open_dir(&dir, repaint) {
            Ok(run) => {
                self.runs.push(run);
                self.selected = self.runs.len() - 1;
            }
            Err(e) => (self.open_errors).push(format!("cannot follow {}: {e}", dir.display())),
        }
    }

    /// The whole frame: tabs on top, runs on the left, status at the bottom.
    pub fn frame(&mut self, ui: &mut Ui) {
        let mut more = false;
        for run in &mut self.runs {
            more |= run.update();
        }
        if more {
            ui.ctx().request_repaint();
        }
        self.screenshot_step(ui.ctx());
        self.poll_jobs();
        self.keys(ui);
        egui::Panel::top("tabs").show(ui, |ui| self.tab_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            let text = self
                .runs
                .get(self.selected)
                .map_or("no run open".into(), status::line);
            ui.label(text);
        });
        egui::Panel::left("runs")
            .resizable(true)
            .default_size(260.0)
            .size_range(160.0..=480.0)
            .show(ui, |ui| self.runs_panel(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            status::notices(ui, &mut self.runs);
            if self.start_screen(ui) {
                return;
            }
            match (self.tab, self.runs.get(self.selected)) {
                (_, None) => {
                    ui.label("Open a run directory (written by `mimr refine`) on the left.");
                }
                (Tab::Curves, Some(run)) => {
                    let (curves, view) = (&mut self.curves, &mut self.curve_view);
                    curves::show(ui, &self.runs, Some(run), curves, view)
                }
                (Tab::Layers, Some(run)) => layers::show(ui, &run.model, &mut self.layers),
                (Tab::Map, Some(_)) => {
                    if let Some(run) = self.runs.get_mut(self.selected) {
                        map::show(ui, run, &mut self.map);
                    }
                }
            }
        });
    }

    /// 1/2/3 switch tabs (when no text field has focus).
    fn keys(&mut self, ui: &Ui) {
        if ui.ctx().egui_wants_keyboard_input() {
            return;
        }
        let keys = [
            (Key::Num1, Tab::Curves),
            (Key::Num2, Tab::Layers),
            (Key::Num3, Tab::Map),
        ];
        for (key, tab) in keys {
            if ui.input(|i| i.key_pressed(key)) {
                self.tab = tab;
            }
        }
    }

    fn tab_bar(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            for tab in Tab::ALL {
                ui.selectable_value(&mut self.tab, tab, tab.label());
            }
        });
    }

    fn runs_panel(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.heading("Runs");
            let new = ui.button("New...").on_hover_text("open, refine or inspect");
            if new.clicked() {
                self.start.open();
            }
        });
        for (i, run) in self.runs.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                ui.checkbox(&mut run.shown, "plot")
                    .on_hover_text("draw this run in the curves (several overlay)");
                let mark = match run.model.state() {
                    crate::view::RunState::Completed { .. } => "done",
                    crate::view::RunState::Refused => "not read",
                    crate::view::RunState::Waiting => "waiting",
                    crate::view::RunState::InProgress => "live",
                };
                let label = format!("{} ({mark})", run.name);
                if ui.selectable_label(self.selected == i, label).clicked() {
                    self.selected = i;
                }
            });
            self.jobs.controls(ui, run.dir.as_deref(), &run.model);
        }
        ui.separator();
        ui.label("Open a run directory:");
        let field =
            ui.add(egui::TextEdit::singleline(&mut self.open_path).hint_text("path/to/run"));
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        if (ui.button("Open").clicked() || enter) && !self.open_path.trim().is_empty() {
            self.open_dir(PathBuf::from(self.open_path.trim()));
        }
        for e in &self.open_errors {
            ui.colored_label(egui::Color32::from_rgb(213, 94, 0), e);
        }
        if !self.open_errors.is_empty() && ui.button("Clear").clicked() {
            self.open_errors.clear();
        }
        if let Some(run) = self.runs.get(self.selected) {
            ui.separator();
            run_info(ui, run);
        }
    }

    /// Asks for the screenshot once every run's header is read (at most 10 s after the start),
    /// and closes the window once it is saved.
    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let Some(shot) = &mut self.screenshot else {
            return;
        };
        ctx.request_repaint_after(std::time::Duration::from_millis(100));
        let waited = shot.start.elapsed().as_secs_f32();
        let mut done = shot.outcome.lock().map(|o| o.is_some()).unwrap_or(true);
        if !done && waited > SHOT_TIMEOUT_S {
            if let Ok(mut o) = shot.outcome.lock() {
                *o = Some(Err(format!(
                    "no screenshot arrived within {SHOT_TIMEOUT_S} s"
                )));
            }
            done = true;
        }
        if done {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let read = self.runs.iter().all(|r| r.model.info().is_some())
            && (self.tab != Tab::Map
                || self.runs.get(self.selected).is_none_or(|r| r.map.settled()));
        if shot.asked || waited < 1.5 || (!read && waited < 10.0) {
            return;
        }
        shot.asked = true;
        let (path, outcome) = (shot.path.clone(), shot.outcome.clone());
        let callback = egui::ScreenshotCallback::new(move |img| {
            let saved = save_png(&img, &path).map_err(|e| format!("{e:#}"));
            if let Ok(mut o) = outcome.lock() {
                *o = Some(saved);
            }
        });
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
    }

    fn saved(&self) -> Saved {
        Saved {
            run_dirs: self.runs.iter().filter_map(|r| r.dir.clone()).collect(),
            tab: self.tab,
            curves: self.curves.clone(),
            layers: self.layers.clone(),
            map: self.map.clone(),
        }
    }
}

/// The selected run's header facts.
fn run_info(ui: &mut Ui, run: &OpenRun) {
    let Some(info) = run.model.info() else {
        ui.label("waiting for the run log's header");
        return;
    };
    egui::Grid::new("run-info").num_columns(2).show(ui, |ui| {
        let mut row = |k: &str, v: String| {
            ui.label(k);
            ui.add(egui::Label::new(v).wrap());
            ui.end_row();
        };
        row("kind", format!("{:?}", info.kind).to_lowercase());
        row("data", info.dataset.clone());
        row("device", info.device.clone());
        row("heads", info.heads.join(", "));
        if let Some(d) = info.depth {
            row("blocks", d.to_string());
        }
    });
}

impl eframe::App for MimrApp {
    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.frame(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        // a screenshot launch leaves the user's saved session as it was
        if self.screenshot.is_some() {
            return;
        }
        eframe::set_value(storage, eframe::APP_KEY, &self.saved());
    }

    /// Running jobs are stopped (a checkpoint each) and awaited, at most `jobs::CLOSE_WAIT`.
    fn on_exit(&mut self) {
        self.jobs.shutdown(jobs::CLOSE_WAIT);
    }
}

/// Writes a screenshot as PNG.
fn save_png(img: &egui::ColorImage, path: &std::path::Path) -> anyhow::Result<()> {
    let [w, h] = img.size;
    let bytes: Vec<u8> = img.pixels.iter().flat_map(|c| c.to_array()).collect();
    let rgba = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| anyhow::anyhow!("screenshot of {w}×{h} has the wrong number of pixels"))?;
    let mut png = Vec::new();
    rgba.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    crate::fsutil::write_atomic(path, &png)
}

/// Opens the app window (see [`Launch`]).
pub fn run_native(launch: Launch) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("mimr")
            .with_inner_size([1280.0, 820.0]),
        ..Default::default()
    };
    let outcome = ShotOutcome::default();
    let (shot, path) = (outcome.clone(), launch.screenshot.clone());
    eframe::run_native(
        "mimr",
        options,
        Box::new(move |cc| Ok(Box::new(MimrApp::new(cc, launch, shot)))),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the app window: {e}. It needs a display (X11 or Wayland); without one, `mimr refine` runs headless and its run directory opens later with `mimr view`"
        )
    })?;
    let Some(path) = path else {
        return Ok(());
    };
    let result = outcome.lock().map(|o| o.clone()).unwrap_or(None);
    match result {
        Some(Ok(())) => {
            eprintln!("saved {}", path.display());
            Ok(())
        }
        Some(Err(e)) => anyhow::bail!("screenshot {}: {e}", path.display()),
        None => anyhow::bail!(
            "the window closed before the screenshot {} was taken",
            path.display()
        ),
    }
}
