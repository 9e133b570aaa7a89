//! The training loop every trainer shares: resume from the newest checkpoint, epochs of batches
//! from the deterministic loader, the run log, checkpoints, progress, pause/stop and NaN stops.

use super::run_dir::RunDir;
use super::state_file::{Check, fix};
use crate::data::{Batch, EpochIter, EpochPosition, Loader};
use crate::dist::{Comm, Single, broadcast_json, leader_says};
use crate::progress::Progress;
use crate::runlog::{Event, Header, RunLog};
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// File of the loop's own state inside every checkpoint folder.
pub const PROGRESS_FILE: &str = "progress.json";

/// What one training step reports back to the loop.
pub struct StepReport {
    /// The summed loss (non-finite stops the run).
    pub loss: f64,
    /// Events of this step, written when the step is a logging step.
    pub events: Vec<Event>,
    /// A short status for the progress line (stage, loss…).
    pub status: String,
}

/// One trainer (refinement, MAE pre-training) as the loop sees it.
pub trait Task {
    /// The run-log header of a fresh run.
    fn header(&self) -> Header;
    /// Optimisation step number `step` (0-based) on `batch`; `images_per_s` is filled in by
    /// the loop in the returned step events where the task left it 0.
    fn step(&mut self, batch: &Batch, step: u64) -> Result<StepReport>;
    /// Work at the start of a fresh run (thumbnails, a step-0 evaluation).
    fn on_fresh_start(&mut self, dir: &Path, log: &mut RunLog) -> Result<()>;
    /// Work after step `step` (1-based count) whose events must precede its checkpoint.
    fn after_step(&mut self, step: u64, end: u64, log: &mut RunLog) -> Result<()>;
    /// Steps after which a checkpoint is due besides the periodic ones (stage ends).
    fn checkpoint_due(&self, step: u64) -> bool;
    /// Writes the task's state into an (empty) checkpoint folder.
    fn save(&self, folder: &Path) -> Result<()>;
    /// Restores the state saved in `folder` at `step`.
    fn restore(&mut self, folder: &Path, step: u64) -> Result<()>;
    /// After the loop: exports, and for a completed run its final events (before `end`).
    fn finish(&mut self, dir: &Path, log: &mut RunLog, completed: bool) -> Result<()>;
}

/// Run-wide settings of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    pub label: String,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    /// Stop after this many steps in total (0 = no limit).
    pub max_steps: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub log_every: u64,
}

/// Lets another thread pause, resume or stop a running loop (Ctrl-C, the app).
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicBool,
    pause: AtomicBool,
}

impl Control {
    /// Finish the current step, write a checkpoint and return.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    pub fn set_paused(&self, paused: bool) {
        self.pause.store(paused, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    pub fn paused(&self) -> bool {
        self.pause.load(Ordering::SeqCst)
    }
}

/// The loop's state in a checkpoint: the step, the run log's size, the loader's position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub step: u64,
    pub log_offset: u64,
    /// With several ranks: the batch count and the sum of the ranks' sample positions.
    #[serde(default)]
    pub data_pos: EpochPosition,
    /// Each rank's sample position, for a data-parallel run (empty for a single process).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rank_samples: Vec<usize>,
}

impl Resume {
    /// Reads `progress.json` (or, in checkpoints of earlier versions, the same fields of
    /// `state.json`).
    pub fn read(folder: &Path) -> Result<Self> {
        let path = [PROGRESS_FILE, "state.json"]
            .iter()
            .map(|f| folder.join(f))
            .find(|p| p.exists())
            .with_context(|| format!("{}: no {PROGRESS_FILE}", folder.display()))?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable; {}", path.display(), fix(folder)))
    }

    /// Checks a read position against its folder's name (`ckpt-<step>`) and the loader: the
    /// batch within an epoch below `steps_per_epoch`, the sample position within the epoch's
    /// (at most two passes over the `samples` of the data set), the sample position not behind
    /// the batch count.
    pub fn check(&self, folder: &Path, s: &Settings, samples: usize) -> Result<()> {
        let mut c = Check::new(folder, PROGRESS_FILE);
        if let Some(named) = super::checkpoints::step_of(folder) {
            c.ensure(named == self.step, || {
                format!("`step` is {}, the folder's name says {named}", self.step)
            });
        }
        let (batch, sample) = (self.data_pos.batch, self.data_pos.sample);
        c.ensure(batch as u64 <= s.steps_per_epoch, || {
            format!(
                "`data_pos.batch` is {batch}, an epoch has {} batches",
                s.steps_per_epoch
            )
        });
        c.ensure(sample <= samples.saturating_mul(2) && sample >= batch, || {
            format!(
                "`data_pos.sample` is {sample}, expected {batch}..={} (batch {batch} of a data set of {samples})",
                samples.saturating_mul(2)
            )
        });
        c.done()
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub steps: u64,
    pub interrupted: bool,
    pub resumed_from: Option<u64>,
    pub completed: bool,
}

/// Runs (or resumes) `task` in `dir` until its last step, `max_steps`, or a stop request.
pub fn run<T: Task>(
    task: &mut T,
    dir: &RunDir,
    loader: &Loader,
    settings: &Settings,
    control: &Control,
) -> Result<Outcome> {
    run_ranked(task, Some(dir), loader, settings, control, &Single)
}

/// [`run`] on one rank of a data-parallel job (`loader` sharded by rank): rank 0 passes the run
/// directory and alone writes the log, checkpoints and progress, and decides when to stop; the
/// other ranks pass `None`, restore the checkpoint rank 0 picked, and step in lock step.
pub fn run_ranked<T: Task>(
    task: &mut T,
    dir: Option<&RunDir>,
    loader: &Loader,
    settings: &Settings,
    control: &Control,
    comm: &dyn Comm,
) -> Result<Outcome> {
    ensure!(
        settings.steps_per_epoch > 0 && settings.total_steps > 0,
        "nothing to train: {} steps per epoch, {} steps in all",
        settings.steps_per_epoch,
        settings.total_steps
    );
    ensure!(
        dir.is_some() == (comm.rank() == 0),
        "internal: rank {} {} the run directory",
        comm.rank(),
        if dir.is_some() { "holds" } else { "lacks" }
    );
    let resume = resume(task, dir, loader, settings, comm)?;
    let mut log = match dir {
        Some(d) => {
            let offset = resume.as_ref().map(|r| r.log_offset);
            let mut log = RunLog::open(d.path(), offset, task.header())?;
            if resume.is_none() {
                task.on_fresh_start(d.path(), &mut log)?;
            }
            Some(log)
        }
        None => None,
    };
    let mut lp = Loop {
        task,
        dir,
        loader,
        s: settings,
        control,
        comm,
        log: log.as_mut(),
        at: resume.clone().unwrap_or_default(),
        saved: resume.as_ref().map(|r| r.step),
    };
    let interrupted = lp.epochs()?;
    if lp.saved != Some(lp.at.step) && lp.at.step > 0 {
        lp.save()?;
    }
    let step = lp.at.step;
    // a stop that arrives during the very last step still completes the run
    let completed = step >= settings.total_steps;
    let interrupted = interrupted && !completed;
    if let (Some(d), Some(log)) = (dir, log.as_mut()) {
        task.finish(d.path(), log, completed)?;
        if completed {
            log.write(&Event::End { step })?;
        }
    }
    Ok(Outcome {
        steps: step,
        interrupted,
        resumed_from: resume.map(|r| r.step),
        completed,
    })
}

/// The newest checkpoint, validated and restored: rank 0 picks it, then every other rank
/// restores the same folder (the run directory must be on a file system all ranks see).
fn resume<T: Task>(
    task: &mut T,
    dir: Option<&RunDir>,
    loader: &Loader,
    settings: &Settings,
    comm: &dyn Comm,
) -> Result<Option<Resume>> {
    let mut picked = None;
    if let Some(dir) = dir
        && let Some(folder) = dir.checkpoints.latest()?
    {
        let r = Resume::read(&folder)?;
        r.check(&folder, settings, loader.dataset().len())?;
        task.restore(&folder, r.step)
            .with_context(|| format!("cannot resume from {}", folder.display()))?;
        tracing::info!("resuming from {} (step {})", folder.display(), r.step);
        picked = Some((folder, r));
    }
    if comm.size() > 1 {
        let shared = broadcast_json(comm, dir.is_some().then_some(&picked))?;
        if comm.rank() > 0
            && let Some((folder, r)) = &shared
        {
            task.restore(folder, r.step).with_context(|| {
                format!(
                    "rank {}: cannot resume from {}",
                    comm.rank(),
                    folder.display()
                )
            })?;
        }
        picked = shared;
    }
    Ok(picked.map(|(_, r)| r))
}

/// The loop's working state.
struct Loop<'a, T: Task> {
    task: &'a mut T,
    dir: Option<&'a RunDir>,
    loader: &'a Loader,
    s: &'a Settings,
    control: &'a Control,
    comm: &'a dyn Comm,
    /// Rank 0's run log; `None` on the other ranks, which write nothing.
    log: Option<&'a mut RunLog>,
    at: Resume,
    /// The step of the newest checkpoint on disk.
    saved: Option<u64>,
}

impl<T: Task> Loop<'_, T> {
    /// The last step of this invocation.
    fn end(&self) -> u64 {
        match self.s.max_steps {
            0 => self.s.total_steps,
            m => m.min(self.s.total_steps),
        }
    }

    /// Runs epochs until the end; true when stopped by a request.
    fn epochs(&mut self) -> Result<bool> {
        let (spe, end) = (self.s.steps_per_epoch, self.end());
        let mut progress = self.log.is_some().then(|| {
            Progress::new(&self.s.label, "steps", end, self.at.step.min(end)).with_plain_every(50)
        });
        while self.at.step < end {
            let (epoch, pos) = (self.at.step / spe, (self.at.step % spe) as usize);
            let before = self.at.step;
            let mut it = if pos == 0 {
                self.loader.epoch(epoch)
            } else if self.at.data_pos.batch == pos {
                self.loader.epoch_from(epoch, self.shard_position())
            } else {
                // a checkpoint without the loader position (older version): re-read to the step
                let mut it = self.loader.epoch(epoch);
                for b in it.by_ref().take(pos) {
                    b?;
                }
                it
            };
            while let Some(batch) = it.next() {
                let batch = batch?;
                let t0 = Instant::now();
                let report = self.task.step(&batch, self.at.step)?;
                self.at.step += 1;
                self.record_position(&it);
                let images = batch.len() * self.comm.size();
                let ips = images as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                self.after(report, ips, end, progress.as_mut())?;
                if self.wait_or_stop() {
                    tracing::info!("stopped at step {}: writing a checkpoint", self.at.step);
                    return Ok(true);
                }
                if self.at.step >= end || self.at.step.is_multiple_of(spe) {
                    break;
                }
            }
            self.check_epoch(&it, epoch, pos, before)?;
        }
        Ok(false)
    }

    /// The loader position after the last step; with several ranks, every rank's.
    fn record_position(&mut self, it: &EpochIter) {
        let mine = it.position();
        if self.comm.size() == 1 {
            self.at.data_pos = mine;
            return;
        }
        let all = self.comm.all_gather_u64(&[mine.sample as u64]);
        self.at.rank_samples = all.iter().map(|&s| s as usize).collect();
        self.at.data_pos = EpochPosition {
            batch: mine.batch,
            sample: self.at.rank_samples.iter().sum(),
        };
    }

    /// Where this rank's share of the epoch continues after a resume. A checkpoint of another
    /// rank count gives the batch boundary plus an equal share of the samples skipped so far
    /// as unreadable (exact when none were).
    fn shard_position(&self) -> EpochPosition {
        let (rank, ranks) = self.loader.shard();
        let at = self.at.data_pos;
        if ranks == 1 {
            return at;
        }
        if self.at.rank_samples.len() == ranks {
            return EpochPosition {
                batch: at.batch,
                sample: self.at.rank_samples[rank],
            };
        }
        let skipped = at
            .sample
            .saturating_sub(at.batch * self.loader.batch_size());
        EpochPosition {
            batch: at.batch,
            sample: at.batch * self.loader.shard_batch_size() + skipped / ranks,
        }
    }

    /// Logging, the task's hooks and the checkpoint after one step (the writing: rank 0 only).
    fn after(&mut self, r: StepReport, ips: f64, end: u64, p: Option<&mut Progress>) -> Result<()> {
        let step = self.at.step;
        if !r.loss.is_finite() {
            bail!(
                "loss became {} at step {step}: stopping; the last good checkpoint ({}) is kept. Lower the learning rate or check the data",
                r.loss,
                self.saved.map_or("none".into(), |s| format!("step {s}"))
            );
        }
        let Some(log) = self.log.as_deref_mut() else {
            return Ok(());
        };
        if step.is_multiple_of(self.s.log_every) || step == end {
            let time = crate::runlog::unix_time();
            for mut e in r.events {
                if let Event::Step(s) = &mut e {
                    (s.img_per_s, s.time) = (ips, time);
                }
                if let Event::PretrainStep(s) = &mut e {
                    (s.img_per_s, s.time) = (ips, time);
                }
                log.write(&e)?;
            }
        }
        if let Some(p) = p {
            p.set(step, &format!("{}  {ips:.1} img/s", r.status));
        }
        // events first, then the checkpoint: a resume from it never loses an event
        self.task.after_step(step, end, log)?;
        if step.is_multiple_of(self.s.checkpoint_every)
            || step == end
            || self.task.checkpoint_due(step)
        {
            self.save()?;
        }
        Ok(())
    }

    /// Writes a checkpoint of the current step (rank 0; the other ranks hold the same state).
    fn save(&mut self) -> Result<()> {
        let (Some(dir), Some(log)) = (self.dir, self.log.as_deref_mut()) else {
            return Ok(());
        };
        let at = Resume {
            log_offset: log.offset()?,
            ..self.at.clone()
        };
        let task = &*self.task;
        dir.checkpoints
            .save(at.step, self.s.keep_checkpoints, |folder| {
                task.save(folder)?;
                let json = serde_json::to_string_pretty(&at)?;
                std::fs::write(folder.join(PROGRESS_FILE), json)
                    .with_context(|| format!("cannot write {}", folder.display()))
            })?;
        self.saved = Some(at.step);
        Ok(())
    }

    /// Waits while paused; true when a stop was requested (rank 0's request, on every rank).
    fn wait_or_stop(&self) -> bool {
        let leader = self.comm.rank() == 0;
        while leader && self.control.paused() && !self.control.stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
        leader_says(self.comm, leader && self.control.stopped())
    }

    fn check_epoch(&self, it: &EpochIter, epoch: u64, pos: usize, before: u64) -> Result<()> {
        let (spe, step) = (self.s.steps_per_epoch, self.at.step);
        ensure!(
            step > before,
            "epoch {epoch} yielded no batch at position {pos}: too many unreadable samples?"
        );
        ensure!(
            step.is_multiple_of(spe) || step >= self.end(),
            "epoch {epoch} ended after {} of {spe} batches: too few readable samples in {} to fill a batch ({} unreadable seen since the epoch (re)started); fix or remove them",
            step % spe,
            self.loader.dataset().describe(),
            it.skipped()
        );
        Ok(())
    }
}
