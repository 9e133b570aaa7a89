//! [`RunModel`]: everything the app's panels draw for one run, accumulated from source items
//! (header info, per-head step curves, online-eval results, snapshots, progress, notices).

use super::evals::{EvalTable, MetricKey, Tap};
use super::series::{Admit, Ema, Thinned, Thinning, Timeline, retain_even};
use super::source::{Notice, SourceItem};
use crate::runlog::{
    EvalEvent, Event, HeadStep, Header, NnExamples, PretrainStep, Reconstructions, RunKind,
    Snapshot, StepEvent, Thumbnails,
};
use serde_json::Value;

/// How much a model keeps (beyond these, rows are thinned evenly; see `series::Thinning`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Logged steps kept per curve.
    pub step_rows: usize,
    pub evals: usize,
    pub snapshots: usize,
    /// Notices kept; later ones are only counted.
    pub notices: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            step_rows: 50_000,
            evals: 10_000,
            snapshots: 10_000,
            notices: 500,
        }
    }
}

/// A per-head quantity of a refinement step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeadMetric {
    Loss,
    NnSimilarity,
    /// NaN (absent) for unlabelled data.
    NnAccuracy,
    GlobalAlignment,
    LocalAlignment,
}

impl HeadMetric {
    pub const ALL: [HeadMetric; 5] = [
        HeadMetric::Loss,
        HeadMetric::NnSimilarity,
        HeadMetric::NnAccuracy,
        HeadMetric::GlobalAlignment,
        HeadMetric::LocalAlignment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HeadMetric::Loss => "loss",
            HeadMetric::NnSimilarity => "nn-similarity",
            HeadMetric::NnAccuracy => "nn-accuracy",
            HeadMetric::GlobalAlignment => "global alignment",
            HeadMetric::LocalAlignment => "local alignment",
        }
    }

    fn of(self, h: &HeadStep) -> f64 {
        match self {
            HeadMetric::Loss => h.loss,
            HeadMetric::NnSimilarity => h.nn_similarity,
            HeadMetric::NnAccuracy => h.nn_accuracy.unwrap_or(f64::NAN),
            HeadMetric::GlobalAlignment => h.global_alignment,
            HeadMetric::LocalAlignment => h.local_alignment,
        }
    }
}

/// A run-wide quantity of a step (refinement or pre-training).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunMetric {
    /// The total loss (refinement: the sum over heads).
    Loss,
    Lr,
    ImgPerS,
}

impl RunMetric {
    pub const ALL: [RunMetric; 3] = [RunMetric::Loss, RunMetric::Lr, RunMetric::ImgPerS];

    pub fn name(self) -> &'static str {
        match self {
            RunMetric::Loss => "loss",
            RunMetric::Lr => "learning rate",
            RunMetric::ImgPerS => "img/s",
        }
    }
}

/// The logged steps as columns over one timeline. NaN marks an absent or `null` value; use
/// [`StepTable::get`] for an `Option`.
#[derive(Clone, Debug)]
pub struct StepTable {
    timeline: Timeline,
    run: [Vec<f64>; 3],
    /// Per head (in first-seen order) one column per [`HeadMetric`].
    heads: Vec<(String, [Vec<f64>; 5])>,
    thin: Thinning,
}

/// One step's values before they enter the table.
struct StepRow {
    step: u64,
    epoch: f64,
    wall: f64,
    run: [f64; 3],
    heads: Vec<(String, [f64; 5])>,
}

impl StepTable {
    fn new(cap: usize) -> Self {
        Self {
            timeline: Timeline::default(),
            run: Default::default(),
            heads: Vec::new(),
            thin: Thinning::new(cap),
        }
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub fn len(&self) -> usize {
        self.timeline.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timeline.is_empty()
    }

    /// A run-wide column, one value per row.
    pub fn run(&self, m: RunMetric) -> &[f64] {
        &self.run[m as usize]
    }

    /// A head's column, one value per row (None for a head never logged).
    pub fn head(&self, name: &str, m: HeadMetric) -> Option<&[f64]> {
        let (_, cols) = self.heads.iter().find(|(n, _)| n == name)?;
        Some(&cols[m as usize])
    }

    /// Row `i` of a column as an `Option` (None when absent, null or out of range).
    pub fn get(column: &[f64], i: usize) -> Option<f64> {
        column.get(i).copied().filter(|v| v.is_finite())
    }

    /// The heads logged so far, in first-seen order.
    pub fn heads(&self) -> impl Iterator<Item = &str> {
        self.heads.iter().map(|(n, _)| n.as_str())
    }

    fn push(&mut self, row: StepRow) {
        match self.thin.admit(self.len()) {
            Admit::Skip => return,
            Admit::Push => {}
            Admit::HalveThenPush => self.halve(),
        }
        let n = self.len();
        self.timeline.push(row.step, row.epoch, row.wall);
        for (col, v) in self.run.iter_mut().zip(row.run) {
            col.push(v);
        }
        for (name, values) in row.heads {
            let i = self.head_index(name, n);
            for (col, v) in self.heads[i].1.iter_mut().zip(values) {
                col.push(v);
            }
        }
        // heads missing from this row
        for (_, cols) in &mut self.heads {
            cols.iter_mut().for_each(|c| c.resize(n + 1, f64::NAN));
        }
    }

    /// The column set of `name`, added (NaN for the `rows` earlier rows) when new.
    fn head_index(&mut self, name: String, rows: usize) -> usize {
        if let Some(i) = self.heads.iter().position(|(n, _)| *n == name) {
            return i;
        }
        let cols = std::array::from_fn(|_| vec![f64::NAN; rows]);
        self.heads.push((name, cols));
        self.heads.len() - 1
    }

    fn halve(&mut self) {
        self.timeline.retain_even();
        self.run.iter_mut().for_each(retain_even);
        for (_, cols) in &mut self.heads {
            cols.iter_mut().for_each(retain_even);
        }
    }
}

/// What the header says about the run, with the config values the progress line needs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub kind: RunKind,
    pub version: u32,
    pub minor: u32,
    pub heads: Vec<String>,
    pub dataset: String,
    pub device: String,
    /// The resolved configuration and the encoder architecture, as written.
    pub config: Value,
    pub encoder: Value,
    /// `data.batch_size`.
    pub batch_size: Option<u64>,
    /// `stage2.epochs`, `stage3.epochs`.
    pub stage_epochs: Option<[u64; 2]>,
    /// `run.max_steps` when set (> 0).
    pub max_steps: Option<u64>,
    pub log_every: Option<u64>,
    /// The encoder's blocks (`encoder.depth`).
    pub depth: Option<usize>,
}

impl RunInfo {
    pub fn from_header(h: Header) -> Self {
        let c = &h.config;
        let stage = |s: &str| json_u64(c, &[s, "epochs"]);
        Self {
            batch_size: json_u64(c, &["data", "batch_size"])
                .or_else(|| json_u64(c, &["batch_size"])),
            stage_epochs: stage("stage2").zip(stage("stage3")).map(|(a, b)| [a, b]),
            max_steps: json_u64(c, &["run", "max_steps"]).filter(|&m| m > 0),
            log_every: json_u64(c, &["run", "log_every"]),
            depth: json_u64(&h.encoder, &["depth"]).and_then(|d| usize::try_from(d).ok()),
            kind: h.kind,
            version: h.version,
            minor: h.minor,
            heads: h.heads,
            dataset: h.dataset,
            device: h.device,
            config: h.config,
            encoder: h.encoder,
        }
    }
}

fn json_u64(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_u64()
}

/// The newest logged step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatestStep {
    pub step: u64,
    pub epoch: u64,
    /// None for pre-training.
    pub stage: Option<u8>,
    pub lr: f64,
    pub img_per_s: f64,
}

/// Where the run stands, as far as its log tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No header read yet.
    Waiting,
    /// Started and not completed: running, paused or stopped (the log alone cannot tell).
    InProgress,
    /// The `end` event: all steps done.
    Completed { step: u64 },
    /// A newer major format version: nothing was read.
    Refused,
}

/// The data of the status line: `stage 3 · step 1 240 / 4 680 · 412 img/s · ETA 8 min`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub state: RunState,
    pub stage: Option<u8>,
    pub step: u64,
    /// The step this run stops at, once derivable (the plan's total, capped by `run.max_steps`).
    pub total: Option<u64>,
    /// Smoothed recent throughput.
    pub img_per_s: Option<f64>,
    /// Training seconds left at that throughput (while in progress).
    pub eta_seconds: Option<f64>,
}

/// Steps per epoch, narrowed down from step events (`epoch = ⌊(step − 1) / spe⌋`) or read off an
/// eval event (`epoch = step / spe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StepsPerEpoch {
    lo: u64,
    hi: u64,
    exact: Option<u64>,
}

impl Default for StepsPerEpoch {
    fn default() -> Self {
        Self {
            lo: 1,
            hi: u64::MAX,
            exact: None,
        }
    }
}

impl StepsPerEpoch {
    fn observe_step(&mut self, step: u64, epoch: u64) {
        let Some(n) = step.checked_sub(1) else { return };
        self.lo = self.lo.max(n / epoch.saturating_add(1) + 1);
        if let Some(hi) = n.checked_div(epoch) {
            self.hi = self.hi.min(hi);
        }
    }

    fn observe_eval(&mut self, step: u64, epoch: f64) {
        if epoch.is_finite() && epoch > 0.0 {
            let spe = (step as f64 / epoch).round();
            if spe >= 1.0 && spe < u64::MAX as f64 {
                self.exact = Some(spe as u64);
            }
        }
    }

    fn known(&self) -> Option<u64> {
        self.exact.or((self.lo == self.hi).then_some(self.lo))
    }
}

/// Seconds since the run's first logged step: measured from the step events' `time` (run log
/// minor 2), else estimated as Σ (steps since the previous logged step) · batch / img_per_s,
/// which leaves out evaluations, checkpoints, pauses and restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct WallClock {
    seconds: f64,
    last_step: u64,
    last_rate: Option<f64>,
    /// The first logged clock time, once a step carried one.
    first_time: Option<f64>,
}

impl WallClock {
    /// Advances to `step` logged at `time` at `img_per_s`; NaN when neither a clock time nor a
    /// batch size is known.
    fn advance(&mut self, step: u64, img_per_s: f64, batch: Option<u64>, time: Option<f64>) -> f64 {
        if img_per_s.is_finite() && img_per_s > 0.0 {
            self.last_rate = Some(img_per_s);
        }
        if let Some(t) = time.filter(|t| t.is_finite()) {
            let t0 = *self.first_time.get_or_insert(t);
            self.seconds = self.seconds.max(t - t0);
        } else if let (Some(b), Some(r)) = (batch, self.last_rate) {
            self.seconds += step.saturating_sub(self.last_step) as f64 * b as f64 / r;
        }
        self.last_step = self.last_step.max(step);
        self.now(batch)
    }

    fn now(&self, batch: Option<u64>) -> f64 {
        if self.first_time.is_some() || batch.is_some() {
            self.seconds
        } else {
            f64::NAN
        }
    }
}

/// Smoothing weight of the throughput shown in the status line and used for the ETA.
const RATE_SMOOTHING: f64 = 0.9;

/// One run as the panels draw it. Feed it with [`RunModel::apply`]; it never panics on data.
#[derive(Clone, Debug)]
pub struct RunModel {
    limits: Limits,
    info: Option<RunInfo>,
    steps: StepTable,
    evals: EvalTable,
    snapshots: Thinned<Snapshot>,
    nn_examples: Option<NnExamples>,
    /// The newest MAE reconstructions of a pre-training run.
    reconstructions: Option<Reconstructions>,
    thumbnails: Option<Thumbnails>,
    end: Option<u64>,
    latest: Option<LatestStep>,
    spe: StepsPerEpoch,
    wall: WallClock,
    rate: Ema,
    notices: Vec<Notice>,
    notices_dropped: u64,
    refused: bool,
    revision: u64,
}

impl Default for RunModel {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl RunModel {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            info: None,
            steps: StepTable::new(limits.step_rows),
            evals: EvalTable::new(limits.evals),
            snapshots: Thinned::new(limits.snapshots),
            nn_examples: None,
            reconstructions: None,
            thumbnails: None,
            end: None,
            latest: None,
            spe: StepsPerEpoch::default(),
            wall: WallClock::default(),
            rate: Ema::new(RATE_SMOOTHING),
            notices: Vec::new(),
            notices_dropped: 0,
            refused: false,
            revision: 0,
        }
    }

    /// Applies items in order.
    pub fn extend(&mut self, items: impl IntoIterator<Item = SourceItem>) {
        items.into_iter().for_each(|i| self.apply(i));
    }

    /// Applies one item: an event, a notice, or a restart (everything read so far is dropped,
    /// the notices are kept).
    pub fn apply(&mut self, item: SourceItem) {
        self.revision += 1;
        match item {
            SourceItem::Event { event, .. } => self.event(event),
            SourceItem::Notice(n) => {
                self.refused |= n.is_fatal();
                self.notice(n);
            }
            SourceItem::Restarted => {
                let (notices, dropped, revision) = (
                    std::mem::take(&mut self.notices),
                    self.notices_dropped,
                    self.revision,
                );
                *self = Self::new(self.limits);
                (self.notices, self.notices_dropped, self.revision) = (notices, dropped, revision);
                self.notice(Notice::Rewritten);
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Header(h) => self.info = Some(RunInfo::from_header(h)),
            Event::Step(s) => self.step(s),
            Event::PretrainStep(p) => self.pretrain_step(p),
            Event::NnExamples(n) => self.nn_examples = Some(n),
            Event::Snapshot(s) => self.snapshots.push(s),
            Event::Eval(e) => self.eval(e),
            Event::Thumbnails(t) => self.thumbnails = Some(t),
            Event::Reconstructions(r) => self.reconstructions = Some(r),
            Event::End { step } => self.end = Some(step),
            Event::Unknown => {}
        }
    }

    fn step(&mut self, s: StepEvent) {
        let heads: Vec<(String, [f64; 5])> = s
            .heads
            .iter()
            .map(|(n, h)| (n.clone(), HeadMetric::ALL.map(|m| m.of(h))))
            .collect();
        let loss = if heads.is_empty() {
            f64::NAN
        } else {
            heads
                .iter()
                .map(|(_, v)| v[HeadMetric::Loss as usize])
                .sum()
        };
        self.push_step(
            (s.step, s.epoch, s.time),
            Some(s.stage),
            [loss, s.lr, s.img_per_s],
            heads,
        );
    }

    fn pretrain_step(&mut self, p: PretrainStep) {
        self.push_step(
            (p.step, p.epoch, p.time),
            None,
            [p.loss, p.lr, p.img_per_s],
            Vec::new(),
        );
    }

    /// Appends one logged step; `at` = (step, epoch, clock time).
    fn push_step(
        &mut self,
        (step, epoch, time): (u64, u64, Option<f64>),
        stage: Option<u8>,
        run: [f64; 3],
        heads: Vec<(String, [f64; 5])>,
    ) {
        let [_, lr, img_per_s] = run;
        self.spe.observe_step(step, epoch);
        self.sync_steps_per_epoch();
        let wall = self.wall.advance(step, img_per_s, self.batch_size(), time);
        self.rate.push(img_per_s);
        self.latest = Some(LatestStep {
            step,
            epoch,
            stage,
            lr,
            img_per_s,
        });
        let epoch = epoch as f64;
        self.steps.push(StepRow {
            step,
            epoch,
            wall,
            run,
            heads,
        });
    }

    fn eval(&mut self, e: EvalEvent) {
        self.spe.observe_eval(e.step, e.epoch);
        self.sync_steps_per_epoch();
        for (head, h) in &e.heads {
            if let Some(error) = &h.error {
                self.notice(Notice::EvalFailed {
                    step: e.step,
                    head: head.clone(),
                    error: error.clone(),
                });
            }
        }
        let wall = self.wall.now(self.batch_size());
        self.evals.push(e, wall);
    }

    fn sync_steps_per_epoch(&mut self) {
        let spe = self.spe.known();
        self.steps.timeline.set_steps_per_epoch(spe);
        self.evals.timeline_mut().set_steps_per_epoch(spe);
    }

    fn notice(&mut self, n: Notice) {
        if self.notices.len() < self.limits.notices {
            self.notices.push(n);
        } else {
            self.notices_dropped += 1;
        }
    }

    fn batch_size(&self) -> Option<u64> {
        self.info.as_ref()?.batch_size
    }

    /// Bumped by every applied item: a UI caches derived data (smoothed curves) per revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn info(&self) -> Option<&RunInfo> {
        self.info.as_ref()
    }

    pub fn steps(&self) -> &StepTable {
        &self.steps
    }

    pub fn evals(&self) -> &EvalTable {
        &self.evals
    }

    /// Snapshot files in step order.
    pub fn snapshots(&self) -> &[Snapshot] {
        self.snapshots.items()
    }

    /// The newest reconstructions of a pre-training run.
    pub fn reconstructions(&self) -> Option<&Reconstructions> {
        self.reconstructions.as_ref()
    }

    /// The NN pairs of the newest `nn_examples` event.
    pub fn nn_examples(&self) -> Option<&NnExamples> {
        self.nn_examples.as_ref()
    }

    pub fn thumbnails(&self) -> Option<&Thumbnails> {
        self.thumbnails.as_ref()
    }

    pub fn latest(&self) -> Option<&LatestStep> {
        self.latest.as_ref()
    }

    /// The step of the `end` event (the run completed).
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Notices beyond [`Limits::notices`], counted but not kept.
    pub fn notices_dropped(&self) -> u64 {
        self.notices_dropped
    }

    pub fn clear_notices(&mut self) {
        self.notices.clear();
        self.notices_dropped = 0;
    }

    /// The heads of the run: the header's, then any others logged, in that order.
    pub fn heads(&self) -> Vec<String> {
        let mut v: Vec<String> = self.info.iter().flat_map(|i| i.heads.clone()).collect();
        for h in self
            .steps
            .heads()
            .chain(self.evals.heads().iter().map(|(n, _)| n.as_str()))
        {
            if !v.iter().any(|x| x == h) {
                v.push(h.to_string());
            }
        }
        v
    }

    /// Where a head reads the encoder: from its eval results, else from its name.
    pub fn tap(&self, head: &str) -> Option<Tap> {
        self.evals.tap(head).or_else(|| Tap::from_name(head))
    }

    /// Every head with its tap, in tap order (heads of unknown tap last): one colour per block.
    pub fn taps(&self) -> Vec<(String, Option<Tap>)> {
        let mut v: Vec<(String, Option<Tap>)> = self
            .heads()
            .into_iter()
            .map(|h| {
                let t = self.tap(&h);
                (h, t)
            })
            .collect();
        v.sort_by(|a, b| (a.1.is_none(), a.1, &a.0).cmp(&(b.1.is_none(), b.1, &b.0)));
        v
    }

    pub fn steps_per_epoch(&self) -> Option<u64> {
        self.spe.known()
    }

    /// The step this run stops at: the `end` step, else the plan's total (`stage2.epochs +
    /// stage3.epochs` epochs) capped by `run.max_steps`, once steps per epoch are known.
    pub fn total_steps(&self) -> Option<u64> {
        if let Some(end) = self.end {
            return Some(end);
        }
        let info = self.info.as_ref()?;
        let [a, b] = info.stage_epochs?;
        let total = a.checked_add(b)?.checked_mul(self.spe.known()?)?;
        Some(info.max_steps.map_or(total, |m| m.min(total)))
    }

    pub fn state(&self) -> RunState {
        match (self.refused, self.end, &self.info) {
            (true, _, _) => RunState::Refused,
            (_, Some(step), _) => RunState::Completed { step },
            (_, None, None) => RunState::Waiting,
            (_, None, Some(_)) => RunState::InProgress,
        }
    }

    /// The status line's data.
    pub fn progress(&self) -> Progress {
        let state = self.state();
        let step = self.latest.map_or(0, |l| l.step).max(self.end.unwrap_or(0));
        let total = self.total_steps();
        let img_per_s = self.rate.value();
        let eta_seconds = match (state, total, self.batch_size(), img_per_s) {
            (RunState::InProgress, Some(t), Some(b), Some(r)) if r > 0.0 => {
                Some(t.saturating_sub(step) as f64 * b as f64 / r)
            }
            _ => None,
        };
        Progress {
            state,
            stage: self.latest.and_then(|l| l.stage),
            step,
            total,
            img_per_s,
            eta_seconds,
        }
    }

    /// The heat map of kNN accuracy with `k` neighbours over blocks × eval steps.
    pub fn knn_heat_map(&self, k: usize) -> super::evals::HeatMap {
        self.evals.heat_map(&MetricKey::knn(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> SourceItem {
        SourceItem::Event {
            line: 0,
            event: serde_json::from_str(json).unwrap(),
        }
    }

    fn header() -> SourceItem {
        ev(r#"{"type":"header","version":1,"minor":2,"heads":["main"],
              "config":{"data":{"batch_size":8},"stage2":{"epochs":1},"stage3":{"epochs":3},
                        "run":{"max_steps":0,"log_every":1}},"encoder":{"depth":12}}"#)
    }

    fn step(s: u64, epoch: u64, ips: f64, heads: &str) -> SourceItem {
        ev(&format!(
            r#"{{"type":"step","step":{s},"epoch":{epoch},"stage":2,"lr":0.1,"img_per_s":{ips},"heads":{{{heads}}}}}"#
        ))
    }

    const MAIN: &str = r#""main":{"loss":2.0,"nn_similarity":0.5,"nn_accuracy":null,"global_alignment":0.1,"local_alignment":0.2}"#;
    const CLS1: &str = r#""cls1":{"loss":1.0,"nn_similarity":0.4,"nn_accuracy":0.3,"global_alignment":null,"local_alignment":0.2}"#;

    #[test]
    fn logged_clock_times_give_the_wall_axis() {
        let mut m = RunModel::default();
        m.apply(header());
        let timed = |s: u64, t: f64| {
            ev(&format!(
                r#"{{"type":"step","step":{s},"epoch":0,"stage":2,"lr":0.1,"img_per_s":8.0,"time":{t},"heads":{{{MAIN}}}}}"#
            ))
        };
        // measured times win over the throughput estimate (which would say 1 s per step)
        m.extend([timed(1, 1000.5), timed(2, 1003.0), timed(3, 1010.25)]);
        let t = m.steps().timeline();
        let wall: Vec<f64> = (0..3)
            .map(|i| t.x(crate::view::XAxis::WallTime, i))
            .collect();
        assert_eq!(wall, vec![0.0, 2.5, 9.75]);
    }

    #[test]
    fn header_values_steps_per_epoch_wall_time_and_eta() {
        let mut m = RunModel::default();
        assert_eq!(m.state(), RunState::Waiting);
        m.apply(header());
        let info = m.info().unwrap();
        assert_eq!(
            (info.batch_size, info.stage_epochs, info.max_steps),
            (Some(8), Some([1, 3]), None)
        );
        assert_eq!(info.depth, Some(12));
        // 4 steps per epoch: step 4 is still epoch 0, step 5 is epoch 1
        m.extend([step(1, 0, 4.0, MAIN), step(4, 0, 8.0, MAIN)]);
        assert_eq!(m.steps_per_epoch(), None);
        m.apply(step(5, 1, 8.0, MAIN));
        assert_eq!(m.steps_per_epoch(), Some(4));
        assert_eq!(m.total_steps(), Some(16));
        // wall: 1·8/4 = 2 s, then 3·8/8 = 3 s, then 1 s
        let t = m.steps().timeline();
        let wall: Vec<f64> = (0..3)
            .map(|i| t.x(crate::view::XAxis::WallTime, i))
            .collect();
        assert_eq!(wall, vec![2.0, 5.0, 6.0]);
        assert_eq!(t.x(crate::view::XAxis::Epoch, 2), 1.25);
        let p = m.progress();
        assert_eq!(
            (p.state, p.step, p.total, p.stage),
            (RunState::InProgress, 5, Some(16), Some(2))
        );
        let r = p.img_per_s.unwrap();
        assert!((p.eta_seconds.unwrap() - 11.0 * 8.0 / r).abs() < 1e-9);
        m.apply(ev(r#"{"type":"end","step":16}"#));
        let p = m.progress();
        assert_eq!(
            (p.state, p.step, p.eta_seconds),
            (RunState::Completed { step: 16 }, 16, None)
        );
    }

    #[test]
    fn an_eval_epoch_gives_steps_per_epoch_and_failures_become_notices() {
        let mut m = RunModel::default();
        m.apply(header());
        m.apply(ev(
            r#"{"type":"eval","step":30,"epoch":2.0,"split":"test","samples":{"bank":1,"queries":1},
                      "heads":{"main":{"block":null,"error":"boom"}}}"#,
        ));
        assert_eq!(m.steps_per_epoch(), Some(15));
        assert!(
            matches!(&m.notices()[0], Notice::EvalFailed { step: 30, head, .. } if head == "main")
        );
        assert_eq!(m.tap("main"), Some(Tap::Output));
        assert_eq!(m.tap("cls4"), Some(Tap::Block(4)));
    }

    #[test]
    fn absent_values_are_nan_columns_and_late_heads_are_padded() {
        let mut m = RunModel::default();
        m.extend([
            header(),
            step(1, 0, 1.0, MAIN),
            step(2, 0, 1.0, &format!("{MAIN},{CLS1}")),
        ]);
        let s = m.steps();
        let acc = s.head("main", HeadMetric::NnAccuracy).unwrap();
        assert!(acc.iter().all(|v| v.is_nan()));
        assert_eq!(StepTable::get(acc, 0), None);
        let c = s.head("cls1", HeadMetric::Loss).unwrap();
        assert!(c[0].is_nan() && c[1] == 1.0);
        assert!(s.head("cls1", HeadMetric::GlobalAlignment).unwrap()[1].is_nan());
        assert_eq!(s.run(RunMetric::Loss), &[2.0, 3.0]);
        assert!(s.head("cls9", HeadMetric::Loss).is_none());
        assert_eq!(m.heads(), vec!["main".to_string(), "cls1".to_string()]);
        assert_eq!(m.taps()[0], ("cls1".to_string(), Some(Tap::Block(1))));
    }

    #[test]
    fn a_restart_clears_the_run_but_keeps_notices_and_rows_stay_bounded() {
        let limits = Limits {
            step_rows: 16,
            notices: 2,
            ..Limits::default()
        };
        let mut m = RunModel::new(limits);
        m.apply(header());
        for s in 1..=1000 {
            m.apply(step(s, 0, 1.0, MAIN));
        }
        let steps = m.steps().timeline().steps();
        assert!(
            steps.len() <= 16 && steps.windows(2).all(|w| w[0] < w[1]),
            "{steps:?}"
        );
        assert_eq!(
            m.steps().head("main", HeadMetric::Loss).unwrap().len(),
            steps.len()
        );
        assert_eq!(m.latest().unwrap().step, 1000);
        let skipped = |line| {
            SourceItem::Notice(Notice::SkippedLine {
                line,
                reason: "x".into(),
            })
        };
        m.extend([skipped(1), skipped(2), skipped(3)]);
        assert_eq!((m.notices().len(), m.notices_dropped()), (2, 1));
        m.clear_notices();
        m.extend([SourceItem::Restarted, step(1, 0, 1.0, MAIN)]);
        assert_eq!(m.notices(), &[Notice::Rewritten]);
        assert_eq!(m.steps().timeline().steps(), &[1]);
        assert!(m.info().is_none());
    }
}
