//! The start screen (no run open, or "New..."): open a run directory, start a refinement, or
//! inspect checkpoints; forms in `refine_form` / `inspect_form`, the path picker in `browse`.

pub mod browse;
pub mod inspect_form;
pub mod refine_form;

use super::MimrApp;
use super::jobs::{self, Jobs, RefineJob};
use browse::{Browser, Choice, Pick};
use eframe::egui::{self, Ui};
use inspect_form::InspectForm;
use refine_form::RefineForm;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};

/// The pages of the start screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Page {
    #[default]
    Home,
    Refine,
    Inspect,
}

/// The field a picked path goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    OpenRun,
    Config,
    /// A field of the refinement form (its index).
    Refine(usize),
    /// A field of the inspection form (its index).
    Inspect(usize),
}

/// What the user asked the app to do.
pub enum Action {
    OpenDir(PathBuf),
    Refine(Box<crate::refine::config::RefineConfig>),
    Inspect(Box<crate::inspect::InspectSpec>),
}

/// The start screen's state.
#[derive(Default)]
pub struct StartScreen {
    /// Shown over open runs ("New..." in the runs panel).
    pub shown: bool,
    pub page: Page,
    open_path: String,
    pub refine: RefineForm,
    pub inspect: InspectForm,
    browser: Option<(Target, Browser)>,
}

impl StartScreen {
    /// Shows the start screen from its home page.
    pub fn open(&mut self) {
        (self.shown, self.page) = (true, Page::Home);
    }

    /// The screen; what the user asked for this frame. `runs_open`: offer a way back.
    pub fn show(&mut self, ui: &mut Ui, runs_open: bool, jobs: &Jobs) -> Option<Action> {
        let mut browse = None;
        let mut action = None;
        ui.horizontal(|ui| {
            if self.page != Page::Home && ui.button("< Start").clicked() {
                self.page = Page::Home;
            }
            if runs_open && ui.button("Back to the runs").clicked() {
                self.shown = false;
            }
        });
        egui::ScrollArea::vertical().show(ui, |ui| {
            action = match self.page {
                Page::Home => self.home(ui, &mut browse),
                Page::Refine => {
                    (self.refine.show(ui, &mut browse)).map(|cfg| Action::Refine(Box::new(cfg)))
                }
                Page::Inspect => (self.inspect.show(ui, &mut browse, jobs.inspection()))
                    .map(|s| Action::Inspect(Box::new(s))),
            };
        });
        if let Some((target, pick)) = browse {
            let start = self.field(target);
            self.browser = Some((target, Browser::new(pick, &start, ui.ctx())));
        }
        self.browser_window(ui);
        action
    }

    fn home(&mut self, ui: &mut Ui, browse: &mut Option<(Target, Pick)>) -> Option<Action> {
        ui.heading("mimr");
        ui.label(
            "Open a run directory (written by `mimr refine`), start a new refinement, or inspect checkpoints.",
        );
        ui.add_space(12.0);
        ui.strong("Open run directory");
        let mut action = None;
        ui.horizontal(|ui| {
            if path_row(ui, "Run directory", &mut self.open_path) {
                *browse = Some((Target::OpenRun, Pick::Folder));
            }
            let path = self.open_path.trim();
            if ui.button("Open run").clicked() && !path.is_empty() {
                action = Some(Action::OpenDir(PathBuf::from(path)));
            }
        });
        ui.add_space(12.0);
        if ui.button("New refinement").clicked() {
            self.page = Page::Refine;
        }
        ui.label("Refine a checkpoint with nearest-neighbour alignment: the run of `mimr refine --config`.");
        ui.add_space(12.0);
        if ui.button("Inspect checkpoints").clicked() {
            self.page = Page::Inspect;
        }
        ui.label("Embed an image folder with one checkpoint, or compare two, layer by layer.");
        action
    }

    /// The text of a path field.
    fn field(&self, target: Target) -> String {
        match target {
            Target::OpenRun => self.open_path.clone(),
            Target::Config => self.refine.config_path.clone(),
            Target::Refine(i) => self.refine.field(i),
            Target::Inspect(i) => self.inspect.field(i),
        }
    }

    fn set_field(&mut self, target: Target, path: String) {
        match target {
            Target::OpenRun => self.open_path = path,
            Target::Config => self.refine.config_path = path,
            Target::Refine(i) => self.refine.set_field(i, path),
            Target::Inspect(i) => self.inspect.set_field(i, path),
        }
    }

    fn browser_window(&mut self, ui: &Ui) {
        let Some((target, browser)) = &mut self.browser else {
            return;
        };
        let target = *target;
        match browser.show(ui) {
            Some(Choice::Chosen(path)) => {
                self.set_field(target, path.display().to_string());
                self.browser = None;
            }
            Some(Choice::Cancelled) => self.browser = None,
            None => {}
        }
    }
}

/// A labelled one-line path field and its "Browse..." button; true when the button was pressed.
pub fn path_row(ui: &mut Ui, label: &str, value: &mut String) -> bool {
    let label = ui.label(label);
    let edit = egui::TextEdit::singleline(value)
        .hint_text("path")
        .desired_width(380.0);
    ui.add(edit).labelled_by(label.id);
    ui.button("Browse...").clicked()
}

/// An error in the app's warning colour.
pub fn error_label(ui: &mut Ui, text: &str) {
    ui.colored_label(egui::Color32::from_rgb(213, 94, 0), text);
}

/// Runs `f` on a new thread; its result arrives on the receiver and the UI is repainted.
pub fn background<T: Send + 'static>(
    ctx: &egui::Context,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<Receiver<T>, String> {
    let (tx, rx) = mpsc::channel();
    let ctx = ctx.clone();
    std::thread::Builder::new()
        .name("mimr-app-task".into())
        .spawn(move || {
            let _ = tx.send(f());
            ctx.request_repaint();
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(rx)
}

impl MimrApp {
    /// The start screen in the central panel when no run is open or "New..." was pressed;
    /// true when it was shown.
    pub(super) fn start_screen(&mut self, ui: &mut Ui) -> bool {
        if !self.runs.is_empty() && !self.start.shown {
            return false;
        }
        if let Some(action) = self.start.show(ui, !self.runs.is_empty(), &self.jobs) {
            self.act(action, ui.ctx());
        }
        true
    }

    /// The start screen's state (its forms' `--set` lists, for checks).
    pub fn start(&self) -> &StartScreen {
        &self.start
    }

    /// Opens the result of an inspection that has just finished.
    pub(super) fn poll_jobs(&mut self) {
        if let Some(dir) = self.jobs.inspection_done() {
            self.open_dir(dir);
            self.start.shown = false;
        }
    }

    /// Starts an inspection (`mimr app --inspect`); a failure is shown on its form.
    pub fn start_inspect(&mut self, spec: crate::inspect::InspectSpec, ctx: &egui::Context) {
        self.act(Action::Inspect(Box::new(spec)), ctx);
        (self.start.shown, self.start.page) = (true, Page::Inspect);
    }

    /// Starts a refinement at launch (`mimr demo`); a failure is shown on the refinement form.
    pub fn start_refine_at_launch(
        &mut self,
        cfg: crate::refine::config::RefineConfig,
        ctx: &egui::Context,
    ) {
        self.act(Action::Refine(Box::new(cfg)), ctx);
        if self.start.refine.start_error.is_some() {
            (self.start.shown, self.start.page) = (true, Page::Refine);
        }
    }

    fn act(&mut self, action: Action, ctx: &egui::Context) {
        match action {
            Action::OpenDir(dir) => {
                let errors = self.open_errors.len();
                self.open_dir(dir);
                self.start.shown &= self.open_errors.len() > errors;
            }
            Action::Refine(cfg) => match self.start_refine(*cfg, ctx) {
                Ok(()) => (self.start.shown, self.start.refine.start_error) = (false, None),
                Err(e) => self.start.refine.start_error = Some(e),
            },
            Action::Inspect(spec) => match self.jobs.spawn_inspect(*spec, ctx) {
                Ok(()) => self.start.inspect.started(),
                Err(e) => self.start.inspect.start_error = Some(e),
            },
        }
    }

    /// Starts `cfg` on a job thread and follows its run directory (reopened: a fresh model).
    fn start_refine(
        &mut self,
        cfg: crate::refine::config::RefineConfig,
        ctx: &egui::Context,
    ) -> Result<(), String> {
        let dir = std::path::absolute(&cfg.run.dir).map_err(|e| e.to_string())?;
        if self.jobs.active_in(&dir) {
            return Err(format!("a job already writes {}", dir.display()));
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let job = RefineJob::spawn(cfg, jobs::repainter(Some(ctx.clone())))
            .map_err(|e| format!("cannot start the job thread: {e}"))?;
        self.jobs.push(job);
        self.runs.retain(|r| r.dir.as_ref() != Some(&dir));
        self.open_dir(dir);
        Ok(())
    }
}
