//! Tests of the shared training loop with a tiny counting task: checkpoints at the right steps
//! (the final one once), stop and resume equal to an uninterrupted run, NaN and write failures.

use super::driver::{Control, Settings, StepReport, Task, run};
use super::run_dir::RunDir;
use crate::data::{Batch, Dataset, Loader, MultiCropConfig, Sample};
use crate::runlog::{self, Event, Header, PretrainStep, RunLog};
use anyhow::{Result, bail};
use std::path::Path;
use std::sync::{Arc, Mutex};

struct Tiny(usize);

impl Dataset for Tiny {
    fn len(&self) -> usize {
        self.0
    }
    fn get(&self, i: usize) -> Result<Sample> {
        let image = image::RgbImage::from_pixel(8, 8, image::Rgb([i as u8, 0, 0]));
        Ok(Sample {
            index: i,
            label: Some((i % 2) as u32),
            image,
        })
    }
    fn classes(&self) -> &[String] {
        &[]
    }
    fn describe(&self) -> String {
        "tiny".into()
    }
}

/// Sums the sample indices it sees; its state is that sum.
#[derive(Default)]
struct Counter {
    sum: u64,
    saves: Arc<Mutex<Vec<u64>>>,
    stop_at: Option<(u64, Arc<Control>)>,
    nan_at: Option<u64>,
    fail_saves_from: Option<u64>,
    step: u64,
}

impl Task for Counter {
    fn header(&self) -> Header {
        Header {
            version: 0,
            minor: 0,
            kind: runlog::RunKind::Pretrain,
            config: Default::default(),
            heads: vec![],
            dataset: "tiny".into(),
            device: "none".into(),
            encoder: Default::default(),
        }
    }
    fn step(&mut self, batch: &Batch, step: u64) -> Result<StepReport> {
        self.sum += batch.indices.iter().map(|&i| i as u64 + 1).sum::<u64>() * (step + 1);
        self.step = step + 1;
        if let Some((s, c)) = &self.stop_at
            && *s == step + 1
        {
            c.stop();
        }
        let loss = if self.nan_at == Some(step + 1) {
            f64::NAN
        } else {
            1.0
        };
        let e = PretrainStep {
            step: step + 1,
            epoch: 0,
            lr: 0.0,
            img_per_s: 0.0,
            time: None,
            loss,
        };
        Ok(StepReport {
            loss,
            events: vec![Event::PretrainStep(e)],
            status: String::new(),
        })
    }
    fn on_fresh_start(&mut self, _: &Path, _: &mut RunLog) -> Result<()> {
        Ok(())
    }
    fn after_step(&mut self, _: u64, _: u64, _: &mut RunLog) -> Result<()> {
        Ok(())
    }
    fn checkpoint_due(&self, step: u64) -> bool {
        step == 5
    }
    fn save(&self, folder: &Path) -> Result<()> {
        if self.fail_saves_from.is_some_and(|s| self.step >= s) {
            bail!("disk full (simulated)");
        }
        self.saves.lock().unwrap().push(self.step);
        std::fs::write(folder.join("sum"), self.sum.to_string())?;
        Ok(())
    }
    fn restore(&mut self, folder: &Path, step: u64) -> Result<()> {
        self.sum = std::fs::read_to_string(folder.join("sum"))?.parse()?;
        self.step = step;
        Ok(())
    }
    fn finish(&mut self, _: &Path, _: &mut RunLog, _: bool) -> Result<()> {
        Ok(())
    }
}

fn settings(max_steps: u64) -> Settings {
    Settings {
        label: "test".into(),
        steps_per_epoch: 4,
        total_steps: 12,
        max_steps,
        checkpoint_every: 3,
        keep_checkpoints: 10,
        log_every: 1,
    }
}

fn go(dir: &Path, task: &mut Counter, max_steps: u64, control: &Control) -> Result<u64> {
    let loader = Loader::new(
        Arc::new(Tiny(9)),
        MultiCropConfig::for_image_size(8, 4, 0),
        2,
        7,
        1,
        2,
    )?;
    let rd = RunDir::open(dir, "x = 1", |_| Ok(()))?;
    Ok(run(task, &rd, &loader, &settings(max_steps), control)?.steps)
}

fn logged_steps(dir: &Path) -> Vec<u64> {
    let r = runlog::read_all(&dir.join(runlog::FILE)).unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    let steps = r.events.iter().filter_map(|e| match e {
        Event::PretrainStep(s) => Some(s.step),
        _ => None,
    });
    steps.collect()
}

#[test]
fn checkpoints_fall_on_period_boundaries_and_the_end_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Counter::default();
    assert_eq!(go(dir.path(), &mut t, 0, &Control::default()).unwrap(), 12);
    assert_eq!(*t.saves.lock().unwrap(), vec![3, 5, 6, 9, 12]);
    assert_eq!(logged_steps(dir.path()), (1..=12).collect::<Vec<_>>());
    let r = runlog::read_all(&dir.path().join(runlog::FILE)).unwrap();
    assert_eq!(r.events.last(), Some(&Event::End { step: 12 }));
}

#[test]
fn stop_and_resume_equal_an_uninterrupted_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut whole = Counter::default();
    go(a.path(), &mut whole, 0, &Control::default()).unwrap();
    let control = Arc::new(Control::default());
    let mut first = Counter {
        stop_at: Some((7, control.clone())),
        ..Default::default()
    };
    assert_eq!(go(b.path(), &mut first, 0, &control).unwrap(), 7);
    assert_eq!(*first.saves.lock().unwrap(), vec![3, 5, 6, 7]);
    // max_steps stops a second invocation early; the third completes the run
    let mut second = Counter::default();
    assert_eq!(
        go(b.path(), &mut second, 10, &Control::default()).unwrap(),
        10
    );
    let mut third = Counter::default();
    assert_eq!(
        go(b.path(), &mut third, 0, &Control::default()).unwrap(),
        12
    );
    assert_eq!(third.sum, whole.sum);
    assert_eq!(logged_steps(b.path()), (1..=12).collect::<Vec<_>>());
}

/// The error message of a run expected to fail.
fn failure(dir: &Path, t: &mut Counter) -> String {
    format!("{:#}", go(dir, t, 0, &Control::default()).unwrap_err())
}

#[test]
fn a_nan_loss_or_a_failed_checkpoint_stops_and_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Counter {
        nan_at: Some(8),
        ..Default::default()
    };
    let err = failure(dir.path(), &mut t);
    assert!(
        err.contains("loss became NaN at step 8") && err.contains("step 6"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut t = Counter {
        fail_saves_from: Some(6),
        ..Default::default()
    };
    let err = failure(dir.path(), &mut t);
    assert!(
        err.contains("disk full") && err.contains("ckpt-000000006"),
        "{err}"
    );
    // the run resumes from the last good checkpoint (step 5) and completes
    let mut again = Counter::default();
    assert_eq!(
        go(dir.path(), &mut again, 0, &Control::default()).unwrap(),
        12
    );
    let mut whole = Counter::default();
    go(
        tempfile::tempdir().unwrap().path(),
        &mut whole,
        0,
        &Control::default(),
    )
    .unwrap();
    assert_eq!(again.sum, whole.sum);
}
