//! The app's background jobs: refinements run in-process on their own thread (the function
//! `mimr refine` calls), steered with `train::Control`; their state reaches the UI through a mutex.

use crate::device::DeviceChoice;
use crate::inspect::{InspectProgress, InspectSpec, Phase};
use crate::refine::config::RefineConfig;
use crate::train::Control;
use crate::view::RunModel;
use eframe::egui::{self, Color32, Ui};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long closing the window waits for running jobs to checkpoint and return.
pub const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// How a job's thread ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ended {
    /// The refinement returned: all steps done, or stopped early (`interrupted`).
    Returned { steps: u64, interrupted: bool },
    /// It returned an error (or panicked): the text, as `mimr refine` prints it.
    Failed(String),
}

/// What a job is doing, as the runs panel shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Running,
    Paused,
    /// A stop was asked: the step under way finishes and a checkpoint is written.
    Stopping,
    Finished {
        steps: u64,
    },
    Stopped {
        steps: u64,
    },
    Failed(String),
}

impl JobState {
    /// The state in words.
    pub fn text(&self) -> String {
        match self {
            JobState::Running => "running".into(),
            JobState::Paused => "paused".into(),
            JobState::Stopping => "stopping (finishing the step, writing a checkpoint)".into(),
            JobState::Finished { steps } => format!("finished ({steps} steps)"),
            JobState::Stopped { steps } => {
                format!("stopped after {steps} steps (checkpoint written)")
            }
            JobState::Failed(e) => format!("failed: {e}"),
        }
    }

    /// Still running on its thread (paused and stopping included).
    pub fn active(&self) -> bool {
        matches!(
            self,
            JobState::Running | JobState::Paused | JobState::Stopping
        )
    }
}

/// One refinement running in the app's process.
pub struct RefineJob {
    /// The run directory (absolute), the same one `mimr refine` would write.
    pub dir: PathBuf,
    pub device: DeviceChoice,
    control: Arc<Control>,
    ended: Arc<Mutex<Option<Ended>>>,
    thread: Option<JoinHandle<()>>,
}

impl RefineJob {
    /// Starts `crate::refine::run::refine(cfg, control)` on a new thread; `repaint` is called
    /// when it ends. Fails only when the OS refuses a thread.
    pub fn spawn(cfg: RefineConfig, repaint: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let dir = std::path::absolute(&cfg.run.dir).unwrap_or_else(|_| cfg.run.dir.clone());
        let device = cfg.run.device;
        let control = Arc::new(Control::default());
        let ended = Arc::new(Mutex::new(None));
        let (c, e) = (control.clone(), ended.clone());
        let thread = std::thread::Builder::new()
            .name("mimr-app-refine".into())
            .spawn(move || {
                let out = run_refine(cfg, &c);
                if let Ok(mut slot) = e.lock() {
                    *slot = Some(out);
                }
                repaint();
            })?;
        Ok(Self {
            dir,
            device,
            control,
            ended,
            thread: Some(thread),
        })
    }

    pub fn state(&self) -> JobState {
        let ended = self
            .ended
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|p| Some(Ended::Failed(format!("job state lost: {p}"))));
        match ended {
            Some(Ended::Returned { steps, interrupted }) if interrupted => {
                JobState::Stopped { steps }
            }
            Some(Ended::Returned { steps, .. }) => JobState::Finished { steps },
            Some(Ended::Failed(e)) => JobState::Failed(e),
            None if self.control.stopped() => JobState::Stopping,
            None if self.control.paused() => JobState::Paused,
            None => JobState::Running,
        }
    }

    /// Pauses (after the step under way) or resumes.
    pub fn set_paused(&self, paused: bool) {
        self.control.set_paused(paused);
    }

    /// Asks the run to stop: it finishes the step, writes a checkpoint and returns.
    pub fn stop(&self) {
        self.control.stop();
    }
}

/// Waits until `thread` has returned or `deadline` passes; true when it returned (or was none).
fn join_until(thread: &mut Option<JoinHandle<()>>, deadline: Instant) -> bool {
    let Some(t) = thread else {
        return true;
    };
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !t.is_finished() {
        return false;
    }
    if let Some(t) = thread.take() {
        let _ = t.join();
    }
    true
}

/// The refinement with a panic turned into an error (the app stays up).
fn run_refine(cfg: RefineConfig, control: &Control) -> Ended {
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
        crate::refine::run::refine(cfg, control)
    }));
    match out {
        Ok(Ok(o)) => Ended::Returned {
            steps: o.steps,
            interrupted: o.interrupted,
        },
        Ok(Err(e)) => Ended::Failed(format!("{e:#}")),
        Err(panic) => Ended::Failed(panic_text(panic.as_ref())),
    }
}

/// The message of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    format!("panicked: {msg}")
}

/// Every job started in this session.
#[derive(Default)]
pub struct Jobs {
    refines: Vec<RefineJob>,
    /// The latest checkpoint inspection (one at a time).
    inspect: Option<InspectJob>,
}

impl Jobs {
    /// Adds a started refinement (replacing a finished job of the same run directory).
    pub fn push(&mut self, job: RefineJob) {
        self.refines
            .retain(|j| j.dir != job.dir || j.state().active());
        self.refines.push(job);
    }

    /// The newest job writing `dir`.
    pub fn for_dir(&self, dir: &Path) -> Option<&RefineJob> {
        self.refines.iter().rev().find(|j| j.dir == dir)
    }

    /// True while a job writes `dir`.
    pub fn active_in(&self, dir: &Path) -> bool {
        self.for_dir(dir).is_some_and(|j| j.state().active())
    }

    /// Stops every job and waits up to `wait` for them to checkpoint; the number still running.
    pub fn shutdown(&mut self, wait: Duration) -> usize {
        for j in &self.refines {
            j.set_paused(false);
            j.stop();
        }
        if let Some(j) = &self.inspect {
            j.cancel.store(true, Ordering::SeqCst);
        }
        let deadline = Instant::now() + wait;
        let mut left = 0;
        for j in &mut self.refines {
            left += usize::from(!join_until(&mut j.thread, deadline));
        }
        if let Some(j) = &mut self.inspect {
            left += usize::from(!join_until(&mut j.thread, deadline));
        }
        left
    }

    /// The latest inspection job.
    pub fn inspection(&self) -> Option<&InspectJob> {
        self.inspect.as_ref()
    }

    /// Starts an inspection on a new thread (one at a time).
    pub fn spawn_inspect(&mut self, spec: InspectSpec, ctx: &egui::Context) -> Result<(), String> {
        if self.inspect.as_ref().is_some_and(|j| j.state().active()) {
            return Err("an inspection is running already".into());
        }
        let job = InspectJob::spawn(spec, repainter(Some(ctx.clone())))
            .map_err(|e| format!("cannot start the job thread: {e}"))?;
        self.inspect = Some(job);
        Ok(())
    }

    /// The directory of an inspection that has just succeeded (once), for the app to open.
    pub fn inspection_done(&mut self) -> Option<PathBuf> {
        let job = self.inspect.as_mut().filter(|j| !j.opened)?;
        let InspectState::Done(dir) = job.state() else {
            return None;
        };
        job.opened = true;
        Some(dir)
    }

    /// The state and controls of the job writing `dir`, if any (under the run's name).
    pub fn controls(&self, ui: &mut Ui, dir: Option<&Path>, model: &RunModel) {
        let Some(job) = dir.and_then(|d| self.for_dir(d)) else {
            return;
        };
        let state = job.state();
        ui.horizontal_wrapped(|ui| {
            // one button is drawn: the guard of the state's own arm
            match &state {
                JobState::Running if ui.button("Pause").clicked() => job.set_paused(true),
                JobState::Paused if ui.button("Resume").clicked() => job.set_paused(false),
                _ => {}
            }
            if matches!(state, JobState::Running | JobState::Paused)
                && ui
                    .button("Stop")
                    .on_hover_text("finish the step, write a checkpoint, end the run")
                    .clicked()
            {
                job.stop();
            }
            let text = match first_step(job.device, model).filter(|_| state == JobState::Running) {
                Some(note) => format!("job: running, {note}"),
                None => format!("job: {}", state.text()),
            };
            match state {
                JobState::Failed(_) => ui.colored_label(Color32::from_rgb(213, 94, 0), text),
                _ => ui.label(text),
            };
        });
    }
}

impl Drop for Jobs {
    /// Jobs still running when the app goes (tests, a closed window) are stopped and awaited.
    fn drop(&mut self) {
        self.shutdown(CLOSE_WAIT);
    }
}

/// What a job does before the run log's first step event.
fn first_step(device: DeviceChoice, model: &RunModel) -> Option<&'static str> {
    if !model.steps().is_empty() {
        return None;
    }
    let wgpu = match model.info() {
        Some(info) => info.device.starts_with("wgpu"),
        None if device == DeviceChoice::Cpu => false,
        None => return Some("loading the checkpoint and the data"),
    };
    Some(if wgpu {
        "first step: compiling shaders and autotuning (can take a minute)"
    } else {
        "first step"
    })
}

/// A repaint hook for `ctx` (none in tests without a context).
pub fn repainter(ctx: Option<egui::Context>) -> impl Fn() + Send + 'static {
    move || {
        if let Some(c) = &ctx {
            c.request_repaint();
        }
    }
}

/// What an inspection is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum InspectState {
    /// The latest progress report (none yet: starting).
    Running(Option<InspectProgress>),
    Cancelling,
    Cancelled,
    /// Written (or found cached): the directory the app opens.
    Done(PathBuf),
    Failed(String),
}

impl InspectState {
    pub fn active(&self) -> bool {
        matches!(self, InspectState::Running(_) | InspectState::Cancelling)
    }
}

/// One checkpoint inspection on its thread.
pub struct InspectJob {
    pub spec: InspectSpec,
    progress: Arc<Mutex<Option<InspectProgress>>>,
    ended: Arc<Mutex<Option<InspectEnd>>>,
    cancel: Arc<AtomicBool>,
    /// The result was handed to the app to open.
    opened: bool,
    thread: Option<JoinHandle<()>>,
}

impl InspectJob {
    fn spawn(spec: InspectSpec, repaint: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let progress = Arc::new(Mutex::new(None));
        let ended = Arc::new(Mutex::new(None));
        let cancel = Arc::new(AtomicBool::new(false));
        let (p, e, c, s) = (
            progress.clone(),
            ended.clone(),
            cancel.clone(),
            spec.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("mimr-app-inspect".into())
            .spawn(move || {
                let report = |now: InspectProgress| {
                    if let Ok(mut slot) = p.lock() {
                        *slot = Some(now);
                    }
                    repaint();
                };
                let out = run_inspect(&s, &report, &c);
                if let Ok(mut slot) = e.lock() {
                    *slot = Some(out);
                }
                repaint();
            })?;
        Ok(Self {
            spec,
            progress,
            ended,
            cancel,
            opened: false,
            thread: Some(thread),
        })
    }

    pub fn state(&self) -> InspectState {
        let ended = self.ended.lock().map(|e| e.clone());
        match ended {
            Err(p) => InspectState::Failed(format!("job state lost: {p}")),
            Ok(Some(InspectEnd::Done(dir))) => InspectState::Done(dir),
            Ok(Some(InspectEnd::Cancelled)) => InspectState::Cancelled,
            Ok(Some(InspectEnd::Failed(e))) => InspectState::Failed(e),
            Ok(None) if self.cancel.load(Ordering::SeqCst) => InspectState::Cancelling,
            Ok(None) => InspectState::Running(self.progress.lock().ok().and_then(|p| *p)),
        }
    }

    /// Progress bar and Cancel while running; the outcome after.
    pub fn show(&self, ui: &mut Ui) {
        match self.state() {
            InspectState::Running(p) => {
                let (frac, text) = match p {
                    Some(p) => (
                        p.done as f32 / p.total.max(1) as f32,
                        format!("{}: {} / {}", phase_name(p.phase), p.done, p.total),
                    ),
                    None => (0.0, "starting".to_string()),
                };
                ui.add(egui::ProgressBar::new(frac).text(text));
                if ui.button("Cancel").clicked() {
                    self.cancel.store(true, Ordering::SeqCst);
                }
            }
            InspectState::Cancelling => {
                ui.label("cancelling (after the current chunk)...");
            }
            InspectState::Cancelled => {
                ui.label("inspection cancelled");
            }
            InspectState::Done(dir) => {
                ui.label(format!("done: {}", dir.display()));
            }
            InspectState::Failed(e) => {
                ui.colored_label(
                    Color32::from_rgb(213, 94, 0),
                    format!("inspection failed: {e}"),
                );
            }
        }
    }
}

/// How an inspection's thread ended.
#[derive(Clone, Debug)]
enum InspectEnd {
    Done(PathBuf),
    Cancelled,
    Failed(String),
}

/// `crate::inspect::run` (what `mimr inspect` runs), a panic turned into an error.
fn run_inspect(
    spec: &InspectSpec,
    progress: &dyn Fn(InspectProgress),
    cancel: &AtomicBool,
) -> InspectEnd {
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
        crate::inspect::run(spec, progress, cancel)
    }));
    match out {
        Ok(Ok(dir)) => InspectEnd::Done(dir),
        Ok(Err(e)) if e.downcast_ref::<crate::inspect::Cancelled>().is_some() => {
            InspectEnd::Cancelled
        }
        Ok(Err(e)) => InspectEnd::Failed(format!("{e:#}")),
        Err(panic) => InspectEnd::Failed(panic_text(panic.as_ref())),
    }
}

/// A phase in words.
fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Loading => "loading checkpoints",
        Phase::Thumbnails => "thumbnails",
        Phase::Embedding => "embedding images",
        Phase::Writing => "writing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{MemorySource, RunSource};

    /// A model holding only the recorded fixture's header, its device replaced.
    fn header_with_device(device: &str) -> RunModel {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/run_small/events.jsonl"
        );
        let log = std::fs::read_to_string(path).unwrap();
        let mut header: serde_json::Value =
            serde_json::from_str(log.lines().next().unwrap()).unwrap();
        header["device"] = device.into();
        let mut source = MemorySource::new("t");
        source.push_bytes(format!("{header}\n").as_bytes());
        let mut model = RunModel::default();
        model.extend(source.poll());
        assert!(model.info().is_some());
        model
    }

    #[test]
    fn before_the_first_step_wgpu_warns_of_shader_compilation_and_cpu_does_not() {
        let empty = RunModel::default();
        let loading = Some("loading the checkpoint and the data");
        assert_eq!(first_step(DeviceChoice::Auto, &empty), loading);
        assert_eq!(first_step(DeviceChoice::Cpu, &empty), Some("first step"));
        let gpu = header_with_device("wgpu (lavapipe via Vulkan)");
        let text = first_step(DeviceChoice::Auto, &gpu).unwrap();
        assert!(text.contains("compiling shaders and autotuning"), "{text}");
        let cpu = header_with_device("cpu (flex)");
        assert_eq!(first_step(DeviceChoice::Auto, &cpu), Some("first step"));
    }

    #[test]
    fn running_paused_and_stopping_are_active_and_a_stop_says_it_checkpointed() {
        let states = [
            JobState::Running,
            JobState::Paused,
            JobState::Stopping,
            JobState::Finished { steps: 3 },
            JobState::Stopped { steps: 2 },
            JobState::Failed("x".into()),
        ];
        let active: Vec<bool> = states.iter().map(JobState::active).collect();
        assert_eq!(active, [true, true, true, false, false, false]);
        assert_eq!(
            JobState::Stopped { steps: 2 }.text(),
            "stopped after 2 steps (checkpoint written)"
        );
    }
}
