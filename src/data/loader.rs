//! The multi-crop training loader: worker threads decode and augment samples ahead of the consumer,
//! batches come out in order and are bit-identical for a (seed, epoch) whatever the thread count.

use anyhow::{Result, anyhow, ensure};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::dataset::Dataset;
use super::views::{MultiCropConfig, make_views};
use crate::rng::Rng;

/// One training batch of multi-crop views, host-side (method.md §4.1: globals and locals are
/// encoded in two passes, so they are stacked separately).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Dataset indices of the samples (the NN queue stores them).
    pub indices: Vec<usize>,
    /// Labels, −1 for unlabelled samples.
    pub labels: Vec<i64>,
    /// One entry per global view, each `[B, 3, S, S]` flattened.
    pub globals: Vec<Vec<f32>>,
    /// All local views, view-major: `[n_local · B, 3, s, s]` (row `l·B + b` is view `l` of sample `b`).
    pub locals: Vec<f32>,
    pub global_size: usize,
    pub local_size: usize,
    /// Corrupt samples skipped while filling this batch.
    pub skipped: usize,
}

impl Batch {
    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for a batch without samples (never yielded by the loader).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// A shuffling, multi-threaded multi-crop loader over a shared dataset.
pub struct Loader {
    dataset: Arc<dyn Dataset>,
    cfg: Arc<MultiCropConfig>,
    batch_size: usize,
    seed: u64,
    workers: usize,
    prefetch: usize,
    drop_last: bool,
    shuffle: bool,
    /// This process's share of every batch: (rank, ranks).
    shard: (usize, usize),
}

/// The epoch's order: a Fisher–Yates permutation of `0..n` from `Rng::keyed(&[seed, epoch])`.
pub fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::keyed(&[seed, epoch]);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

impl Loader {
    /// `workers` threads (0 = decode on the calling thread) keep up to `prefetch` batches ready;
    /// shuffled, with the last partial batch dropped, unless changed with the `with_*` methods.
    /// The view config should already be validated against the patch size.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        cfg: MultiCropConfig,
        batch_size: usize,
        seed: u64,
        workers: usize,
        prefetch: usize,
    ) -> Result<Self> {
        ensure!(batch_size > 0, "batch size must be positive, got 0");
        ensure!(
            !dataset.is_empty(),
            "dataset {} is empty",
            dataset.describe()
        );
        ensure!(
            dataset.len() >= batch_size,
            "dataset {} has {} samples, fewer than the batch size {batch_size}: lower the batch size",
            dataset.describe(),
            dataset.len()
        );
        let gs = cfg.global_size();
        ensure!(
            gs > 0 && cfg.globals.iter().all(|g| g.size == gs),
            "multi-crop config needs at least one global view and one size for all of them (got {:?})",
            cfg.globals.iter().map(|g| g.size).collect::<Vec<_>>()
        );
        ensure!(
            cfg.n_local == 0 || cfg.local_size() > 0,
            "locals.size must be positive"
        );
        let cfg = Arc::new(cfg);
        Ok(Self {
            dataset,
            cfg,
            batch_size,
            seed,
            workers,
            prefetch,
            drop_last: true,
            shuffle: true,
            shard: (0, 1),
        })
    }

    /// Yields rank `rank`'s share of every batch, of `ranks` equal shares: samples
    /// `rank·b..(rank+1)·b` of each batch of the epoch's order (b = batch size / ranks), so the
    /// ranks' shares together are a single process's batches. A rank replaces an unreadable
    /// sample from further along its own share of the order, so with unreadable files the
    /// batches differ from a single process's (still deterministic).
    pub fn with_shard(mut self, rank: usize, ranks: usize) -> Result<Self> {
        ensure!(
            ranks > 0 && rank < ranks,
            "internal: rank {rank} of {ranks}"
        );
        ensure!(
            self.batch_size.is_multiple_of(ranks),
            "data.batch_size = {} does not split into {ranks} equal shares, one per process: use a multiple of {ranks}",
            self.batch_size
        );
        self.shard = (rank, ranks);
        Ok(self)
    }

    /// Samples per yielded batch: this rank's share.
    pub fn shard_batch_size(&self) -> usize {
        self.batch_size / self.shard.1
    }

    /// (rank, ranks) of this loader's share.
    pub fn shard(&self) -> (usize, usize) {
        self.shard
    }

    /// Keep (false) or drop (true, the default) the last partial batch.
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Shuffle each epoch (the default) or read in dataset order.
    pub fn with_shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Batches per epoch when no sample is corrupt.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    pub fn config(&self) -> &MultiCropConfig {
        &self.cfg
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The batches of epoch `epoch`; sample `i`'s views use `Rng::keyed(&[seed, epoch, i])`.
    ///
    /// With `drop_last` (the default) every epoch yields exactly [`Self::batches_per_epoch`]
    /// full batches: samples skipped as unreadable are replaced by continuing from the start of
    /// the epoch's order (at most once round), so step counts and schedules never shift.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, EpochPosition::default())
    }

    /// The rest of epoch `epoch` from `at` (an [`EpochIter::position`] taken after some batch):
    /// the same batches a fresh iterator yields after that point, without decoding the earlier
    /// samples.
    pub fn epoch_from(&self, epoch: u64, at: EpochPosition) -> EpochIter {
        let n = self.dataset.len();
        let order = if self.shuffle {
            permutation(n, self.seed, epoch)
        } else {
            (0..n).collect()
        };
        let order = shard_order(order, self.batch_size, self.shard);
        let n = order.len();
        let positions = if self.drop_last { 2 * n } else { n };
        let job = Arc::new(Job {
            dataset: self.dataset.clone(),
            cfg: self.cfg.clone(),
            order,
            positions,
            seed: self.seed,
            epoch,
        });
        let gate = Gate::starting_at(at.sample);
        let mut it = EpochIter {
            job: job.clone(),
            gate: Arc::new(gate),
            rx: None,
            handles: Vec::new(),
            pending: HashMap::new(),
            pos: at.sample,
            batches: at.batch,
            max_batches: self.drop_last.then(|| self.batches_per_epoch()),
            batch_size: self.shard_batch_size(),
            drop_last: self.drop_last,
            done: false,
            skipped: 0,
            start_error: None,
        };
        if self.workers > 0 {
            let window = self.prefetch.max(1) * self.shard_batch_size() + self.workers;
            let (tx, rx) = sync_channel(window);
            it.rx = Some(rx);
            for w in 0..self.workers {
                let (job, gate, tx) = (job.clone(), it.gate.clone(), tx.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("mimr-loader-{w}"))
                    .spawn(move || worker(&job, &gate, &tx, window));
                match spawned {
                    Ok(h) => it.handles.push(h),
                    Err(e) => {
                        it.start_error = Some(anyhow!("cannot start loader thread {w}: {e}"));
                        break;
                    }
                }
            }
        }
        it
    }
}

/// Rank `rank`'s part of `order`: its `batch / ranks` samples of each run of `batch`.
fn shard_order(order: Vec<usize>, batch: usize, (rank, ranks): (usize, usize)) -> Vec<usize> {
    if ranks == 1 {
        return order;
    }
    let b = batch / ranks;
    order
        .chunks(batch)
        .flat_map(|c| c.iter().skip(rank * b).take(b).copied())
        .collect()
}

/// What every worker of one epoch shares.
struct Job {
    dataset: Arc<dyn Dataset>,
    cfg: Arc<MultiCropConfig>,
    order: Vec<usize>,
    /// Positions the epoch may visit: position p reads `order[p % order.len()]`.
    positions: usize,
    seed: u64,
    epoch: u64,
}

/// Where an epoch iterator stands: batches yielded and sample positions consumed so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochPosition {
    pub batch: usize,
    pub sample: usize,
}

/// A sample's label and views.
type Views = (Option<u32>, Vec<Vec<f32>>);
/// Inner error: the sample is unreadable and skipped. Outer error: a panic, which is fatal.
type Outcome = std::result::Result<Result<Views>, String>;

/// Loads and augments the sample at position `pos` of the epoch order.
fn process(job: &Job, pos: usize) -> Outcome {
    let index = job.order[pos % job.order.len()];
    let run = || -> Result<Views> {
        let s = job.dataset.get(index)?;
        let mut rng = Rng::keyed(&[job.seed, job.epoch, index as u64]);
        let (views, _) = make_views(&s.image, &job.cfg, &mut rng);
        Ok((s.label, views))
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .map_err(|_| format!("the loader panicked on sample {index} (see the panic message above)"))
}

/// Flow control: workers claim positions in order and may run at most `window` positions ahead
/// of what the consumer has taken, which bounds the reorder buffer and the channel.
#[derive(Default)]
struct Gate {
    consumed: Mutex<usize>,
    cv: Condvar,
    stop: AtomicBool,
    next: AtomicUsize,
}

impl Gate {
    /// A gate whose workers and consumer both start at position `pos`.
    fn starting_at(pos: usize) -> Self {
        Self {
            consumed: Mutex::new(pos),
            next: AtomicUsize::new(pos),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        self.consumed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until `pos` is inside the window; false when the epoch is being torn down.
    fn wait_turn(&self, pos: usize, window: usize) -> bool {
        let mut c = self.lock();
        while pos >= *c + window && !self.stop.load(Ordering::SeqCst) {
            c = self.cv.wait(c).unwrap_or_else(|e| e.into_inner());
        }
        !self.stop.load(Ordering::SeqCst)
    }

    fn advance(&self) {
        *self.lock() += 1;
        self.cv.notify_all();
    }

    fn halt(&self) {
        {
            let _c = self.lock();
            self.stop.store(true, Ordering::SeqCst);
        }
        self.cv.notify_all();
    }
}

fn worker(job: &Job, gate: &Gate, tx: &SyncSender<(usize, Outcome)>, window: usize) {
    loop {
        let pos = gate.next.fetch_add(1, Ordering::SeqCst);
        // positions of the second round (replacing unreadable samples) are decoded on demand
        if pos >= job.order.len() || !gate.wait_turn(pos, window) {
            return;
        }
        if tx.send((pos, process(job, pos))).is_err() {
            return;
        }
    }
}

/// The batches of one epoch, in order; dropping it stops and joins the workers.
pub struct EpochIter {
    job: Arc<Job>,
    gate: Arc<Gate>,
    rx: Option<Receiver<(usize, Outcome)>>,
    handles: Vec<JoinHandle<()>>,
    pending: HashMap<usize, Outcome>,
    pos: usize,
    /// Batches yielded so far (counting those before a resume position).
    batches: usize,
    /// The epoch ends after this many batches (`drop_last`), else when the order is exhausted.
    max_batches: Option<usize>,
    batch_size: usize,
    drop_last: bool,
    done: bool,
    skipped: usize,
    start_error: Option<anyhow::Error>,
}

impl EpochIter {
    /// Batches yielded and sample positions consumed so far: pass it to [`Loader::epoch_from`]
    /// to continue the epoch after the last batch taken.
    pub fn position(&self) -> EpochPosition {
        EpochPosition {
            batch: self.batches,
            sample: self.pos,
        }
    }

    /// Unreadable samples skipped by this iterator (since the epoch started or resumed).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The outcome for position `pos`, from the workers (reordered) or computed here.
    fn outcome(&mut self, pos: usize) -> Result<Result<Views>> {
        let out = match &self.rx {
            Some(rx) if pos < self.job.order.len() => loop {
                if let Some(o) = self.pending.remove(&pos) {
                    break o;
                }
                let (p, o) = rx.recv().map_err(|_| {
                    anyhow!("loader workers stopped before delivering sample position {pos}")
                })?;
                self.pending.insert(p, o);
            },
            _ => process(&self.job, pos),
        };
        self.gate.advance();
        out.map_err(|msg| anyhow!(msg))
    }

    fn shutdown(&mut self) {
        self.gate.halt();
        self.rx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Stacks per-sample views into per-group batches (globals per view, locals view-major).
fn assemble(items: Vec<(usize, Views)>, skipped: usize, cfg: &MultiCropConfig) -> Batch {
    let b = items.len();
    let (ng, nl) = (cfg.globals.len(), cfg.n_local);
    let (gs, ls) = (cfg.global_size(), cfg.local_size());
    let mut globals: Vec<Vec<f32>> = (0..ng)
        .map(|_| Vec::with_capacity(b * 3 * gs * gs))
        .collect();
    for (g, out) in globals.iter_mut().enumerate() {
        items
            .iter()
            .for_each(|(_, (_, views))| out.extend_from_slice(&views[g]));
    }
    let mut locals = Vec::with_capacity(nl * b * 3 * ls * ls);
    for l in 0..nl {
        items
            .iter()
            .for_each(|(_, (_, views))| locals.extend_from_slice(&views[ng + l]));
    }
    let indices = items.iter().map(|(i, _)| *i).collect();
    let labels = items
        .iter()
        .map(|(_, (l, _))| l.map_or(-1, i64::from))
        .collect();
    Batch {
        indices,
        labels,
        globals,
        locals,
        global_size: gs,
        local_size: ls,
        skipped,
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.done {
            return None;
        }
        if let Some(e) = self.start_error.take() {
            self.done = true;
            self.shutdown();
            return Some(Err(e));
        }
        if self.max_batches.is_some_and(|m| self.batches >= m) {
            self.done = true;
            self.shutdown();
            return None;
        }
        let mut items = Vec::with_capacity(self.batch_size);
        let mut skipped = 0;
        let n = self.job.order.len();
        // a batch spans at most n positions, so it never holds one sample twice
        let stop = self.job.positions.min(self.pos + n);
        while items.len() < self.batch_size && self.pos < stop {
            let (pos, index) = (self.pos, self.job.order[self.pos % n]);
            self.pos += 1;
            match self.outcome(pos) {
                Err(e) => {
                    self.done = true;
                    self.shutdown();
                    return Some(Err(e));
                }
                Ok(Err(e)) => {
                    tracing::warn!("skipping sample {index}: {e:#}");
                    skipped += 1;
                    self.skipped += 1;
                }
                Ok(Ok(v)) => items.push((index, v)),
            }
        }
        if items.is_empty() || (self.drop_last && items.len() < self.batch_size) {
            self.done = true;
            self.shutdown();
            return None;
        }
        self.batches += 1;
        Some(Ok(assemble(items, skipped, &self.job.cfg)))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::{Sample, Split};

    struct Synth {
        n: usize,
        bad: Vec<usize>,
        classes: Vec<String>,
    }

    impl Dataset for Synth {
        fn len(&self) -> usize {
            self.n
        }
        fn get(&self, i: usize) -> Result<Sample> {
            ensure!(
                i < self.n && !self.bad.contains(&i),
                "synthetic sample {i} is corrupt"
            );
            let image = image::RgbImage::from_fn(10 + (i % 5) as u32, 12, |x, y| {
                image::Rgb([
                    ((x as usize * 20 + i) % 256) as u8,
                    (y * 20) as u8,
                    ((i * 7) % 256) as u8,
                ])
            });
            Ok(Sample {
                index: i,
                label: (i % 4 != 3).then_some((i % 3) as u32),
                image,
            })
        }
        fn classes(&self) -> &[String] {
            &self.classes
        }
        fn describe(&self) -> String {
            format!("synthetic ({} samples)", self.n)
        }
    }

    fn synth(n: usize, bad: Vec<usize>) -> Arc<dyn Dataset> {
        Arc::new(Synth {
            n,
            bad,
            classes: vec!["a".into(), "b".into(), "c".into()],
        })
    }

    fn cfg() -> MultiCropConfig {
        MultiCropConfig::for_image_size(16, 8, 3)
    }

    fn run(
        ds: Arc<dyn Dataset>,
        workers: usize,
        epoch: u64,
        drop_last: bool,
    ) -> (Vec<Batch>, usize) {
        let loader = Loader::new(ds, cfg(), 4, 42, workers, 2)
            .unwrap()
            .with_drop_last(drop_last);
        let mut it = loader.epoch(epoch);
        let batches: Vec<Batch> = it.by_ref().map(|b| b.unwrap()).collect();
        (batches, it.skipped())
    }

    #[test]
    fn batches_are_identical_for_any_worker_count() {
        let ds = synth(23, vec![]);
        let (one, _) = run(ds.clone(), 1, 3, true);
        assert_eq!(one.len(), 5);
        assert_eq!(run(ds.clone(), 3, 3, true).0, one);
        assert_eq!(run(ds.clone(), 0, 3, true).0, one);
        let (other, _) = run(ds.clone(), 3, 4, true);
        assert_ne!(other[0].indices, one[0].indices);
        let mut seen: Vec<usize> = one.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 20, "indices repeat within an epoch");
    }

    #[test]
    fn rank_shares_make_up_the_single_process_batches() {
        let ds = synth(23, vec![]);
        let (whole, _) = run(ds.clone(), 1, 3, true);
        let shares: Vec<Vec<Batch>> = (0..2)
            .map(|r| {
                let l = Loader::new(ds.clone(), cfg(), 4, 42, 1, 2).unwrap();
                let l = l.with_shard(r, 2).unwrap();
                l.epoch(3).map(|b| b.unwrap()).collect()
            })
            .collect();
        assert_eq!(shares[0].len(), whole.len());
        for (k, w) in whole.iter().enumerate() {
            let (a, b) = (&shares[0][k], &shares[1][k]);
            assert_eq!([a.indices.clone(), b.indices.clone()].concat(), w.indices);
            assert_eq!([a.labels.clone(), b.labels.clone()].concat(), w.labels);
            assert_eq!(
                [a.globals[1].clone(), b.globals[1].clone()].concat(),
                w.globals[1]
            );
        }
        let odd = Loader::new(ds, cfg(), 4, 42, 1, 2)
            .unwrap()
            .with_shard(0, 3);
        let e = odd.err().unwrap();
        assert!(format!("{e:#}").contains("data.batch_size = 4"), "{e:#}");
    }

    #[test]
    fn batch_layout_is_view_major_with_labels() {
        let ds = synth(9, vec![]);
        let (batches, _) = run(ds.clone(), 2, 0, false);
        assert_eq!(
            batches.iter().map(Batch::len).collect::<Vec<_>>(),
            [4, 4, 1]
        );
        let b = &batches[0];
        let (g, l) = (3 * 16 * 16, 3 * 8 * 8);
        assert_eq!((b.global_size, b.local_size, b.globals.len()), (16, 8, 2));
        assert!(b.globals.iter().all(|v| v.len() == 4 * g));
        assert_eq!(b.locals.len(), 3 * 4 * l);
        for (k, &i) in b.indices.iter().enumerate() {
            let s = ds.get(i).unwrap();
            let want = s.label.map_or(-1, i64::from);
            assert_eq!(b.labels[k], want);
            let (views, _) = make_views(&s.image, &cfg(), &mut Rng::keyed(&[42, 0, i as u64]));
            assert_eq!(&b.globals[1][k * g..(k + 1) * g], views[1].as_slice());
            for view in 0..3 {
                let row = view * 4 + k;
                assert_eq!(
                    &b.locals[row * l..(row + 1) * l],
                    views[2 + view].as_slice()
                );
            }
        }
        assert!(b.labels.contains(&-1) || batches.iter().flat_map(|b| &b.labels).any(|&x| x == -1));
    }

    #[test]
    fn corrupt_samples_are_skipped_counted_and_refilled() {
        let ds = synth(14, vec![2, 7]);
        let (batches, skipped) = run(ds.clone(), 3, 1, false);
        assert_eq!(skipped, 2);
        let got: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        // a batch counts the corrupt samples met while filling it: those before the last good
        // sample in the epoch's order; one after it is counted by the iterator alone
        let order = permutation(14, 42, 1);
        let last = order.iter().position(|i| Some(i) == got.last()).unwrap();
        let before = order[..last].iter().filter(|i| [2, 7].contains(i)).count();
        assert_eq!(batches.iter().map(|b| b.skipped).sum::<usize>(), before);
        assert_eq!(got.len(), 12);
        assert!(!got.contains(&2) && !got.contains(&7));
        assert_eq!(
            batches.iter().map(Batch::len).collect::<Vec<_>>(),
            [4, 4, 4]
        );
        let (dropped, _) = run(ds, 1, 1, true);
        assert!(dropped.iter().all(|b| b.len() == 4));
        assert_eq!(dropped, batches);
    }

    /// A dataset that counts its decodes.
    struct Counting {
        inner: Arc<dyn Dataset>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Dataset for Counting {
        fn len(&self) -> usize {
            self.inner.len()
        }
        fn get(&self, i: usize) -> Result<Sample> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.get(i)
        }
        fn classes(&self) -> &[String] {
            self.inner.classes()
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    #[test]
    fn skipped_samples_are_replaced_from_the_start_of_the_epoch_order() {
        let bad = vec![2, 7, 9];
        let ds = synth(14, bad.clone());
        // 11 readable samples, 14 / 4 = 3 batches per epoch: the third wraps around
        let (batches, _) = run(ds.clone(), 2, 1, true);
        assert_eq!(
            batches.iter().map(Batch::len).collect::<Vec<_>>(),
            [4, 4, 4]
        );
        let order = permutation(14, 42, 1);
        let want: Vec<usize> = order
            .iter()
            .chain(&order)
            .copied()
            .filter(|i| !bad.contains(i))
            .take(12)
            .collect();
        let got: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(got, want);
        // nothing readable at all: the epoch ends without a batch instead of looping
        let (none, skipped) = run(synth(8, (0..8).collect()), 1, 0, true);
        assert!(none.is_empty());
        assert_eq!(skipped, 8, "a batch spans at most one round of the order");
    }

    #[test]
    fn an_epoch_resumes_from_its_position_without_decoding_earlier_samples() {
        let ds = synth(23, vec![4]);
        let loader = |ds: Arc<dyn Dataset>| Loader::new(ds, cfg(), 4, 42, 0, 1).unwrap();
        let mut it = loader(ds.clone()).epoch(2);
        let all: Vec<Batch> = it.by_ref().map(|b| b.unwrap()).collect();
        assert_eq!(all.len(), 5);
        let mut it = loader(ds.clone()).epoch(2);
        let first: Vec<Batch> = it.by_ref().take(2).map(|b| b.unwrap()).collect();
        assert_eq!(first, all[..2]);
        let at = it.position();
        assert_eq!(at.batch, 2);
        let counting = Arc::new(Counting {
            inner: ds,
            calls: Default::default(),
        });
        let mut rest_it = loader(counting.clone()).epoch_from(2, at);
        let rest: Vec<Batch> = rest_it.by_ref().map(|b| b.unwrap()).collect();
        assert_eq!(rest, all[2..]);
        let decoded = counting.calls.load(Ordering::SeqCst);
        assert_eq!(decoded, rest_it.position().sample - at.sample);
        assert!(
            decoded <= 13,
            "{decoded} decodes for 3 batches of 4 (one sample unreadable)"
        );
    }

    #[test]
    fn corrupt_jpeg_in_an_image_folder_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        crate::data::folder::make_test_folder(dir.path(), true);
        let ds: Arc<dyn Dataset> = Arc::from(crate::data::open(dir.path(), Split::Train).unwrap());
        let loader = Loader::new(ds, cfg(), 2, 5, 2, 1)
            .unwrap()
            .with_drop_last(false);
        let mut it = loader.epoch(0);
        let batches: Vec<Batch> = it.by_ref().map(|b| b.unwrap()).collect();
        assert_eq!(it.skipped(), 1);
        assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 5);
        assert!(
            batches.iter().all(|b| !b.indices.contains(&3)),
            "dog/bad.jpg is index 3"
        );
    }

    #[test]
    fn early_drop_stops_workers_and_bad_settings_are_errors() {
        let ds = synth(40, vec![]);
        let loader = Loader::new(ds.clone(), cfg(), 4, 1, 4, 1).unwrap();
        let mut it = loader.epoch(0);
        assert!(it.next().unwrap().is_ok());
        drop(it);
        assert_eq!(loader.batches_per_epoch(), 10);
        let err = Loader::new(ds.clone(), cfg(), 41, 1, 1, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("fewer than the batch size 41"), "{err}");
        assert!(Loader::new(ds, cfg(), 0, 1, 1, 1).is_err());
    }

    #[test]
    fn permutation_is_a_seeded_shuffle() {
        let p = permutation(100, 7, 2);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(p, permutation(100, 7, 2));
        assert_ne!(p, permutation(100, 7, 3));
        assert_ne!(p, (0..100).collect::<Vec<_>>());
    }
}
