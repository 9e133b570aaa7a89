//! The embedding map's background worker: loads snapshots and thumbnails, computes projections
//! (PCA aligned across steps, t-SNE progressively), k-means colours and cosine neighbours.

use super::atlas::Atlas;
use super::files::RunFiles;
use super::project::{self, TsneConfig};
use super::snapshot::SnapshotData;
use crate::runlog::NnExamples;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Most points a t-SNE is computed for: its exact neighbour search grows with n² (10 000 points
/// of width 384 take ~14 s on two cores); larger probe sets are shown with PCA.
pub const TSNE_MAX_POINTS: usize = 20_000;

/// Snapshots kept decoded at once (each holds every block's features).
const CACHED_SNAPSHOTS: usize = 6;

/// How 2-D positions are computed from features.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Method {
    /// Principal components: at once, every step aligned to the one before (Procrustes).
    #[default]
    Pca,
    /// Barnes-Hut t-SNE of the chosen step, drawn as it converges, aligned to its nearest step.
    Tsne,
}

impl Method {
    pub const ALL: [Method; 2] = [Method::Pca, Method::Tsne];

    pub fn label(self) -> &'static str {
        match self {
            Method::Pca => "PCA",
            Method::Tsne => "t-SNE",
        }
    }
}

/// A snapshot as the log announced it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotRef {
    pub step: u64,
    pub file: String,
    /// How the UI names it: `step N`, or a checkpoint's file name in an inspection.
    pub name: String,
}

/// What the UI asks for.
#[derive(Clone, Debug)]
pub enum Request {
    /// The tensor names and rows of a snapshot.
    Describe(SnapshotRef),
    /// Positions of `block` at `snapshots` (PCA: all of them, in step order; t-SNE: `focus` only).
    Project {
        block: String,
        method: Method,
        snapshots: Vec<SnapshotRef>,
        focus: u64,
    },
    /// k-means cluster of every row of `block` at `snapshot`.
    Clusters {
        block: String,
        snapshot: SnapshotRef,
        k: usize,
    },
    /// The `k` cosine neighbours of dataset sample `query` at each block and snapshot.
    Neighbours {
        query: usize,
        blocks: Vec<String>,
        snapshots: Vec<SnapshotRef>,
        k: usize,
    },
    /// Decode the thumbnail atlas.
    Thumbnails { image: String, index: String },
    /// Decode the pair atlas of an `nn_examples` event (its `thumbnails` file and index); the
    /// answer goes to [`MapWorker::pair_thumbnails`], not to [`Reply`].
    PairThumbnails(NnExamples),
}

/// An `nn_examples` event with its decoded pair atlas, or why there is none.
pub struct PairAtlas {
    pub examples: NnExamples,
    pub atlas: Result<Arc<Atlas>, String>,
}

/// 2-D positions of a snapshot's rows.
#[derive(Debug)]
pub struct Projected {
    pub index: Vec<usize>,
    pub labels: Vec<Option<u32>>,
    pub xy: Vec<[f32; 2]>,
}

/// One neighbour of the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    pub index: usize,
    pub similarity: f32,
    pub label: Option<u32>,
}

/// The neighbours at one (block, step).
#[derive(Clone, Debug, PartialEq)]
pub struct NeighbourList {
    pub block: String,
    pub step: u64,
    /// The query's label in that snapshot.
    pub query_label: Option<u32>,
    /// Neighbours, or why there are none (the sample is not in that snapshot…).
    pub list: Result<Vec<Neighbour>, String>,
}

/// What the worker sends back.
pub enum Reply {
    Described {
        step: u64,
        blocks: Vec<String>,
        rows: usize,
    },
    Projection {
        block: String,
        method: Method,
        step: u64,
        points: Arc<Projected>,
        /// `(iteration, total)` while a t-SNE is still running.
        running: Option<(usize, usize)>,
    },
    Clusters {
        block: String,
        step: u64,
        k: usize,
        ids: Arc<Vec<u32>>,
    },
    Neighbours {
        query: usize,
        k: usize,
        lists: Vec<NeighbourList>,
    },
    Thumbnails(Result<Arc<Atlas>, String>),
    /// The t-SNE of `block` at `step` was outdated by a newer request and dropped.
    Cancelled {
        block: String,
        step: u64,
    },
    /// A file that could not be read or computed on: shown as a notice.
    Failed(String),
}

/// The worker thread and its channels; the thread ends when this is dropped.
pub struct MapWorker {
    tx: Option<Sender<(u64, Request)>>,
    rx: Receiver<Reply>,
    /// Bumped by every `Project` request; a running t-SNE whose request is outdated stops.
    generation: Arc<AtomicU64>,
    /// The newest answered `PairThumbnails`, until taken.
    pairs: Arc<Mutex<Option<PairAtlas>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MapWorker {
    /// Starts the worker over `files`; `repaint` is called after each reply.
    pub fn spawn(
        files: Arc<dyn RunFiles>,
        repaint: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, requests) = mpsc::channel::<(u64, Request)>();
        let (replies, rx) = mpsc::channel();
        let generation = Arc::new(AtomicU64::new(0));
        let pairs = Arc::new(Mutex::new(None));
        let mut state = Worker {
            files,
            cache: Mutex::new(VecDeque::new()),
            aligned: HashMap::new(),
            generation: generation.clone(),
            sent_as: 0,
            pairs: pairs.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mimr-map".into())
            .spawn(move || {
                let send = |r: Reply| {
                    let ok = replies.send(r).is_ok();
                    repaint();
                    ok
                };
                while let Ok((generation, req)) = requests.recv() {
                    state.sent_as = generation;
                    if !state.serve(req, &send, &repaint) {
                        return;
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            rx,
            generation,
            pairs,
            thread: Some(thread),
        })
    }

    /// Queues a request. A `Project` outdates every t-SNE asked for before it, running or
    /// still queued.
    pub fn send(&self, req: Request) {
        let generation = if matches!(req, Request::Project { .. }) {
            self.generation.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.generation.load(Ordering::Acquire)
        };
        if let Some(tx) = &self.tx {
            let _ = tx.send((generation, req));
        }
    }

    /// Replies that arrived; never blocks.
    pub fn drain(&self) -> Vec<Reply> {
        self.rx.try_iter().collect()
    }

    /// The newest pair atlas decoded since the last call (older answers are dropped); never
    /// blocks.
    pub fn pair_thumbnails(&self) -> Option<PairAtlas> {
        self.pairs.lock().ok()?.take()
    }
}

impl Drop for MapWorker {
    /// Never waits (the UI thread drops runs): a running t-SNE is told to stop, the channel
    /// closes, and the thread ends on its own after its current step of work.
    fn drop(&mut self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.tx = None;
        drop(self.thread.take());
    }
}

/// Cached positions of one (block, method): step → aligned positions.
type Aligned = BTreeMap<u64, Arc<Projected>>;

struct Worker {
    files: Arc<dyn RunFiles>,
    cache: Mutex<VecDeque<(String, Arc<SnapshotData>)>>,
    aligned: HashMap<(String, Method), Aligned>,
    generation: Arc<AtomicU64>,
    /// The generation the request being served was sent in.
    sent_as: u64,
    pairs: Arc<Mutex<Option<PairAtlas>>>,
}

impl Worker {
    /// Answers one request; false once the UI is gone.
    fn serve(&mut self, req: Request, send: &dyn Fn(Reply) -> bool, repaint: &dyn Fn()) -> bool {
        match req {
            Request::Describe(s) => match self.snapshot(&s.file) {
                Ok(d) => send(Reply::Described {
                    step: s.step,
                    blocks: d.features.keys().cloned().collect(),
                    rows: d.len(),
                }),
                Err(e) => send(Reply::Failed(e)),
            },
            Request::Project {
                block,
                method,
                snapshots,
                focus,
            } => match method {
                Method::Pca => self.pca_chain(&block, &snapshots, send),
                Method::Tsne => self.tsne(&block, &snapshots, focus, send),
            },
            Request::Clusters { block, snapshot, k } => match self.clusters(&block, &snapshot, k) {
                Ok(ids) => send(Reply::Clusters {
                    block,
                    step: snapshot.step,
                    k,
                    ids: Arc::new(ids),
                }),
                Err(e) => send(Reply::Failed(e)),
            },
            Request::Neighbours {
                query,
                blocks,
                snapshots,
                k,
            } => {
                let lists = self.neighbours(query, &blocks, &snapshots, k);
                send(Reply::Neighbours { query, k, lists })
            }
            Request::Thumbnails { image, index } => {
                let atlas = self.files.read(&image).and_then(|png| {
                    let json = self.files.read(&index)?;
                    Atlas::decode(&png, &json)
                });
                send(Reply::Thumbnails(atlas.map(Arc::new)))
            }
            Request::PairThumbnails(examples) => {
                let atlas = self.pair_atlas(&examples);
                if let Ok(mut slot) = self.pairs.lock() {
                    *slot = Some(PairAtlas { examples, atlas });
                }
                repaint();
                true
            }
        }
    }

    /// The decoded pair atlas of `ex`; the error names the file.
    fn pair_atlas(&self, ex: &NnExamples) -> Result<Arc<Atlas>, String> {
        let (Some(image), Some(index)) = (ex.thumbnails.as_deref(), ex.thumbnail_index()) else {
            return Err(format!("step {}: no pair images were written", ex.step));
        };
        let png = self.files.read(image)?;
        let json = self.files.read(&index)?;
        let atlas = Atlas::decode(&png, &json).map_err(|e| format!("{image}: {e}"))?;
        Ok(Arc::new(atlas))
    }

    /// A decoded snapshot, from the cache or the file.
    fn snapshot(&self, file: &str) -> Result<Arc<SnapshotData>, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some((_, d)) = cache.iter().find(|(f, _)| f == file)
        {
            return Ok(d.clone());
        }
        let bytes = self.files.read(file)?;
        let data = Arc::new(SnapshotData::parse(file, &bytes)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHED_SNAPSHOTS {
                cache.pop_front();
            }
            cache.push_back((file.to_string(), data.clone()));
        }
        Ok(data)
    }

    fn features<'a>(
        data: &'a SnapshotData,
        block: &str,
        file: &str,
    ) -> Result<&'a project::Features, String> {
        data.features
            .get(block)
            .ok_or_else(|| format!("{file}: no features for `{block}`"))
    }

    /// PCA of every snapshot in step order, each aligned to the previous step's positions.
    fn pca_chain(
        &mut self,
        block: &str,
        snapshots: &[SnapshotRef],
        send: &dyn Fn(Reply) -> bool,
    ) -> bool {
        let mut ordered: Vec<&SnapshotRef> = snapshots.iter().collect();
        ordered.sort_by_key(|s| s.step);
        let key = (block.to_string(), Method::Pca);
        let mut prev: Option<Arc<Projected>> = None;
        for s in ordered {
            let cached = self.aligned.get(&key).and_then(|m| m.get(&s.step)).cloned();
            let points = match cached {
                Some(p) => p,
                None => match self.project_pca(block, s, prev.as_deref()) {
                    Ok(p) => {
                        let p = Arc::new(p);
                        let entry = self.aligned.entry(key.clone()).or_default();
                        entry.insert(s.step, p.clone());
                        p
                    }
                    Err(e) => return send(Reply::Failed(e)),
                },
            };
            prev = Some(points.clone());
            let reply = Reply::Projection {
                block: block.to_string(),
                method: Method::Pca,
                step: s.step,
                points,
                running: None,
            };
            if !send(reply) {
                return false;
            }
        }
        true
    }

    fn project_pca(
        &self,
        block: &str,
        s: &SnapshotRef,
        prev: Option<&Projected>,
    ) -> Result<Projected, String> {
        let data = self.snapshot(&s.file)?;
        let xy = project::pca2(Self::features(&data, block, &s.file)?);
        Ok(aligned_to(prev, &data, xy))
    }

    /// t-SNE of the `focus` snapshot, sent as it converges, aligned to the nearest step that
    /// already has a t-SNE.
    fn tsne(
        &mut self,
        block: &str,
        snapshots: &[SnapshotRef],
        focus: u64,
        send: &dyn Fn(Reply) -> bool,
    ) -> bool {
        let key = (block.to_string(), Method::Tsne);
        let Some(s) = snapshots.iter().find(|s| s.step == focus) else {
            return true;
        };
        let reply = |points, running| Reply::Projection {
            block: block.to_string(),
            method: Method::Tsne,
            step: focus,
            points,
            running,
        };
        if let Some(p) = self.aligned.get(&key).and_then(|m| m.get(&focus)) {
            return send(reply(p.clone(), None));
        }
        let data = match self.snapshot(&s.file) {
            Ok(d) => d,
            Err(e) => return send(Reply::Failed(e)),
        };
        let x = match Self::features(&data, block, &s.file) {
            Ok(x) => x,
            Err(e) => return send(Reply::Failed(e)),
        };
        if x.n > TSNE_MAX_POINTS {
            return send(Reply::Failed(format!(
                "t-SNE is limited to {TSNE_MAX_POINTS} points and {} has {}: use PCA, or a smaller run.probe_size",
                s.file, x.n
            )));
        }
        let nearest = self.aligned.get(&key).and_then(|m| {
            m.iter()
                .min_by_key(|(step, _)| step.abs_diff(focus))
                .map(|(_, p)| p.clone())
        });
        let generation = self.sent_as;
        let cancelled = || {
            send(Reply::Cancelled {
                block: block.to_string(),
                step: focus,
            })
        };
        if self.generation.load(Ordering::Acquire) != generation {
            return cancelled(); // outdated while it waited in the queue
        }
        let cfg = TsneConfig::default();
        let total = cfg.iterations;
        let mut alive = true;
        let result = project::tsne(x, &cfg, |iter, xy| {
            let current = self.generation.load(Ordering::Acquire) == generation;
            let partial = Arc::new(aligned_to(nearest.as_deref(), &data, xy.to_vec()));
            alive = current && send(reply(partial, Some((iter, total))));
            alive
        });
        match result {
            // outdated by a newer request (or the UI is gone: then this send fails too)
            _ if !alive => cancelled(),
            Ok(xy) => {
                let p = Arc::new(aligned_to(nearest.as_deref(), &data, xy));
                let entry = self.aligned.entry(key).or_default();
                entry.insert(focus, p.clone());
                send(reply(p, None))
            }
            Err(e) => send(Reply::Failed(format!("t-SNE of {block}: {e}"))),
        }
    }

    fn clusters(&self, block: &str, s: &SnapshotRef, k: usize) -> Result<Vec<u32>, String> {
        let data = self.snapshot(&s.file)?;
        let x = Self::features(&data, block, &s.file)?;
        Ok(project::kmeans(x, k, 0, 100))
    }

    fn neighbours(
        &self,
        query: usize,
        blocks: &[String],
        snapshots: &[SnapshotRef],
        k: usize,
    ) -> Vec<NeighbourList> {
        let mut lists = Vec::new();
        for s in snapshots {
            for block in blocks {
                let found = self.snapshot(&s.file).and_then(|data| {
                    let x = Self::features(&data, block, &s.file)?;
                    let row = data
                        .row_of(query)
                        .ok_or_else(|| format!("sample {query} is not in {}", s.file))?;
                    let list = project::cosine_top_k(x, row, k)
                        .into_iter()
                        .map(|(r, similarity)| Neighbour {
                            index: data.index[r],
                            similarity,
                            label: data.labels[r],
                        })
                        .collect();
                    Ok((data.labels[row], list))
                });
                lists.push(NeighbourList {
                    block: block.clone(),
                    step: s.step,
                    query_label: found.as_ref().ok().and_then(|(l, _)| *l),
                    list: found.map(|(_, l)| l),
                });
            }
        }
        lists
    }
}

/// `xy` (the rows of `data`) as positions, aligned onto `prev` over the samples both hold.
fn aligned_to(prev: Option<&Projected>, data: &SnapshotData, xy: Vec<[f32; 2]>) -> Projected {
    let xy = match prev {
        Some(p) => {
            let (mut reference, mut moving) = (Vec::new(), Vec::new());
            for (r, &i) in p.index.iter().enumerate() {
                if let Some(row) = data.row_of(i) {
                    reference.push(p.xy[r]);
                    moving.push(xy[row]);
                }
            }
            align_all(&reference, &moving, xy)
        }
        None => xy,
    };
    Projected {
        index: data.index.clone(),
        labels: data.labels.clone(),
        xy,
    }
}

/// Fits the alignment on matched pairs and applies it to every point.
fn align_all(reference: &[[f32; 2]], moving: &[[f32; 2]], all: Vec<[f32; 2]>) -> Vec<[f32; 2]> {
    if reference.len() < 3 {
        return all;
    }
    project::align_with(reference, moving, &all)
}
