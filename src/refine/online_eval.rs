//! Online evaluation inside `mimr refine` (method.md §5, `[eval]` config): the EMA (or live)
//! encoder's features, pooled as the heads pool, at every head's block on a fixed labelled subset.

use super::config::{OnlineEvalConfig, RefineConfig};
use super::trainer::Trainer;
use crate::data::{self, Dataset};
use crate::eval::protocols::{self, Features, Options};
use crate::model::features::{self, Tap};
use crate::model::vit::Vit;
use crate::runlog::{Encoder, EvalEvent, EvalHead, EvalSamples, Event, RunLog};
use anyhow::{Context, Result, ensure};
use burn::module::Module;
use serde_json::Value;
use std::sync::Arc;

/// Images per forward pass when embedding evaluation or snapshot samples.
pub const EMBED_BATCH: usize = 128;

/// Fixed bank and query samples, and the protocols to score them with.
pub struct OnlineEval {
    cfg: OnlineEvalConfig,
    sets: EvalSets,
}

/// Some samples of one dataset split.
pub struct Part {
    ds: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

/// The fixed labelled samples an online evaluation embeds: a bank and queries.
pub struct EvalSets {
    pub bank: Part,
    pub queries: Part,
}

/// Labelled features of one part, per tap.
pub struct Embedded {
    pub feats: Vec<Vec<f32>>,
    pub labels: Vec<u32>,
    pub dim: usize,
    pub skipped: usize,
}

impl OnlineEval {
    /// The evaluation sets for `cfg` over the training split `train` (before `data.limit`);
    /// `None` when online evaluation is off. The query split is opened from `data.train`.
    pub fn new(cfg: &RefineConfig, train: Arc<dyn Dataset>) -> Result<Option<Self>> {
        let e = &cfg.eval;
        if !e.enabled() {
            return Ok(None);
        }
        let sets = EvalSets::new(&cfg.data, train, e.split, e.train_size, e.test_size)?;
        Ok(Some(Self {
            cfg: e.clone(),
            sets,
        }))
    }
    /// True at the end of every `every_epochs`-th epoch and at the last step of this invocation
    /// (`end`: the run's total, or `run.max_steps`).
    pub fn due(&self, step: u64, steps_per_epoch: u64, end: u64) -> bool {
        step == end || step.is_multiple_of(steps_per_epoch.saturating_mul(self.cfg.every_epochs))
    }

    /// Embeds both parts with the EMA encoder, scores every head's block and logs one `eval`
    /// event; a one-line summary goes to stderr.
    pub fn run(&self, t: &Trainer, epoch: f64, log: &mut RunLog) -> Result<()> {
        let which = self.cfg.encoder;
        let live;
        let model = match which {
            Encoder::Ema => &t.ema,
            Encoder::Live => {
                live = t.model.as_ref().context("model missing")?.encoder.valid();
                &live
            }
        };
        let size = t.cfg.data.views.global_size();
        let (bank, queries) = self.sets.embed(
            &|img| eval_image(&t.cfg.data.views, img, size),
            &|imgs, n| embed_heads(t, model, imgs, n),
        )?;
        let taps: Vec<(String, Tap)> = t.specs.iter().map(|s| (s.name.clone(), s.block)).collect();
        let (heads, summary) = score(&taps, &bank, &queries, &self.cfg.scoring(), &t.device)?;
        let name = match which {
            Encoder::Ema => "eval",
            Encoder::Live => "eval, live encoder",
        };
        tracing::info!("[{name}] step {}: {}", t.step, summary.join(", "));
        let at = (t.step, epoch);
        log.write(&eval_event(at, which, &self.cfg, (&bank, &queries), heads))
    }
}

/// The `eval` event of scores `heads` after `at = (step, epoch)` of `encoder`'s features.
pub fn eval_event(
    (step, epoch): (u64, f64),
    encoder: Encoder,
    cfg: &OnlineEvalConfig,
    (bank, queries): (&Embedded, &Embedded),
    heads: std::collections::BTreeMap<String, EvalHead>,
) -> Event {
    Event::Eval(EvalEvent {
        step,
        encoder,
        epoch,
        split: cfg.split.name().into(),
        samples: EvalSamples {
            bank: bank.labels.len(),
            queries: queries.labels.len(),
            skipped: bank.skipped + queries.skipped,
        },
        heads,
    })
}

impl EvalSets {
    /// `bank` samples spread over the training split `train` (of `data.train`) and `queries`
    /// spread over `split` of the same dataset (disjoint parts of `train` when `split` is the
    /// training split or the dataset has no split of its own).
    pub fn new(
        data: &crate::refine::config::DataConfig,
        train: Arc<dyn Dataset>,
        split: data::Split,
        bank: usize,
        queries: usize,
    ) -> Result<Self> {
        let train_split = data.split;
        if split != train_split && !train.has_own_split() {
            tracing::warn!(
                "eval.split = \"{split}\", but {} has no train/test split: bank and queries are disjoint parts of the training samples",
                train.describe()
            );
        }
        if split == train_split || !train.has_own_split() {
            let (b, q) = disjoint(train.len(), bank, queries);
            ensure!(
                !b.is_empty() && !q.is_empty(),
                "eval: the {} training samples cannot hold a bank and queries: lower eval.train_size / eval.test_size",
                train.len()
            );
            let part = |indices| Part {
                ds: train.clone(),
                indices,
            };
            return Ok(Self {
                bank: part(b),
                queries: part(q),
            });
        }
        let test: Arc<dyn Dataset> = data::open(&data.train, split)
            .with_context(|| format!("eval.split = \"{split}\": set eval.split = \"{train_split}\" to draw bank and queries (disjoint) from the training split, or eval.every_epochs = 0"))?
            .into();
        Ok(Self {
            bank: Part {
                indices: spread(train.len(), bank),
                ds: train,
            },
            queries: Part {
                indices: spread(test.len(), queries),
                ds: test,
            },
        })
    }

    /// Both parts embedded by `embed` (images `[n, 3, s, s]` with `n` → one feature matrix per
    /// tap), the images prepared by `image`.
    pub fn embed(
        &self,
        image: &dyn Fn(&image::RgbImage) -> Vec<f32>,
        embed: &dyn Fn(Vec<f32>, usize) -> Result<Vec<Vec<f32>>>,
    ) -> Result<(Embedded, Embedded)> {
        Ok((
            embed_part(&self.bank, image, embed)?,
            embed_part(&self.queries, image, embed)?,
        ))
    }

    /// Labels of the problem both parts span (largest label + 1), at least 2, from `bank` and
    /// `queries` as embedded.
    pub fn n_classes(bank: &Embedded, queries: &Embedded) -> Result<usize> {
        let n = protocols::n_classes(&bank.labels, &queries.labels);
        ensure!(
            n >= 2,
            "eval: the evaluation samples hold fewer than 2 classes: raise eval.train_size or set eval.every_epochs = 0"
        );
        Ok(n)
    }

    /// `n` query samples spread evenly over the queries (fixed examples to show; a folder's
    /// queries are ordered by class, so the first `n` would often be one class).
    pub fn some_queries(&self, n: usize) -> (&dyn Dataset, Vec<usize>) {
        let q = &self.queries;
        let (len, n) = (q.indices.len(), n.min(q.indices.len()));
        let picked = (0..n).map(|i| q.indices[i * len / n]).collect();
        (q.ds.as_ref(), picked)
    }
}

/// What [`score`] runs: protocols, kNN neighbour counts and linear-probe epochs.
pub struct Scoring<'a> {
    pub protocols: &'a [protocols::Protocol],
    pub knn_k: &'a [usize],
    pub probe_epochs: usize,
}

/// Scores every tap's features (`taps[i]` ↔ `bank.feats[i]`) with the protocols; a tap whose
/// scoring fails gets its error recorded (training goes on). Returns the event's entries and a
/// one-line summary per tap.
pub fn score(
    taps: &[(String, Tap)],
    bank: &Embedded,
    queries: &Embedded,
    scoring: &Scoring,
    device: &burn::tensor::Device,
) -> Result<(std::collections::BTreeMap<String, EvalHead>, Vec<String>)> {
    let n_classes = EvalSets::n_classes(bank, queries)?;
    // k above the readable bank size would be dropped; keep at least the bank size itself
    let mut knn_ks: Vec<usize> = scoring
        .knn_k
        .iter()
        .map(|&k| k.min(bank.labels.len()))
        .collect();
    knn_ks.dedup();
    let opts = Options {
        knn_ks,
        probe: crate::eval::probe::ProbeConfig {
            epochs: scoring.probe_epochs,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut heads = std::collections::BTreeMap::new();
    let mut summary = Vec::new();
    for (h, (name, tap)) in taps.iter().enumerate() {
        let (b, q) = (bank.features(h), queries.features(h));
        let mut entry = EvalHead {
            block: *tap,
            ..Default::default()
        };
        let scored = protocols::evaluate(b, q, n_classes, scoring.protocols, &opts, device)
            .and_then(|r| {
                let line = format!("{name} {}", headline(&r));
                Ok((line, serde_json::from_value::<EvalHead>(r)?))
            });
        match scored {
            Ok((line, e)) => {
                summary.push(line);
                entry = EvalHead { block: *tap, ..e };
            }
            Err(e) => {
                tracing::warn!("online evaluation of {name} failed: {e:#}");
                entry.error = Some(format!("{e:#}"));
            }
        }
        heads.insert(name.clone(), entry);
    }
    Ok((heads, summary))
}

impl Embedded {
    pub fn features(&self, head: usize) -> Features<'_> {
        Features {
            x: &self.feats[head],
            labels: &self.labels,
            dim: self.dim,
        }
    }
}

/// The first number of the first protocol result (kNN first when present) for the progress line.
fn headline(r: &Value) -> String {
    let Some(m) = r.as_object() else {
        return String::new();
    };
    let first = m.get_key_value("knn").or_else(|| m.iter().next());
    first
        .and_then(|(p, v)| {
            let (k, x) = v.as_object()?.iter().next()?;
            Some(format!("{p} {k} {:.4}", x.as_f64()?))
        })
        .unwrap_or_default()
}

/// `n` indices spread evenly over `0..len` (all of them when `n ≥ len`).
fn spread(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|i| i * len / n).collect()
}

/// Disjoint bank and query indices spread evenly over `0..len`, at most `bank + queries` of them,
/// the queries interleaved among the bank in proportion.
fn disjoint(len: usize, bank: usize, queries: usize) -> (Vec<usize>, Vec<usize>) {
    let all = spread(len, bank + queries);
    let m = all.len();
    // queries keep their share of what fits, and both parts get one sample when m ≥ 2
    let nq = (queries * m)
        .div_ceil((bank + queries).max(1))
        .clamp(m.min(1), m.saturating_sub(1).max(m.min(1)));
    let (mut b, mut q) = (Vec::new(), Vec::new());
    for (j, &i) in all.iter().enumerate() {
        if (j * nq) / m != ((j + 1) * nq) / m {
            q.push(i);
        } else {
            b.push(i);
        }
    }
    (b, q)
}

/// Decodes the part with `image` (skipping unreadable samples) and embeds it with `embed` in
/// chunks of [`EMBED_BATCH`] images.
fn embed_part(
    part: &Part,
    image: &dyn Fn(&image::RgbImage) -> Vec<f32>,
    embed: &dyn Fn(Vec<f32>, usize) -> Result<Vec<Vec<f32>>>,
) -> Result<Embedded> {
    let (mut feats, mut labels, mut skipped) = (Vec::<Vec<f32>>::new(), Vec::new(), 0);
    let mut dim = 0;
    for chunk in part.indices.chunks(EMBED_BATCH) {
        let (mut imgs, mut n) = (Vec::new(), 0);
        for &i in chunk {
            let Some(s) = data::get_or_skip(part.ds.as_ref(), i, &mut skipped) else {
                continue;
            };
            let label = s.label.with_context(|| {
                format!("eval: sample {i} of {} has no label: online evaluation needs a labelled dataset (set eval.every_epochs = 0)", part.ds.describe())
            })?;
            imgs.extend(image(&s.image));
            labels.push(label);
            n += 1;
        }
        if n == 0 {
            continue;
        }
        let out = embed(imgs, n)?;
        feats.resize(out.len(), Vec::new());
        for (h, f) in out.into_iter().enumerate() {
            dim = f.len() / n;
            feats[h].extend(f);
        }
    }
    ensure!(
        !labels.is_empty(),
        "eval: no readable sample among the {} chosen from {}",
        part.indices.len(),
        part.ds.describe()
    );
    Ok(Embedded {
        feats,
        labels,
        dim,
        skipped,
    })
}

/// The eval transform (resize to size/0.875, centre crop to `size`) normalised like the
/// training `views`.
pub fn eval_image(views: &data::MultiCropConfig, img: &image::RgbImage, size: usize) -> Vec<f32> {
    let resize = (size as f64 / 0.875).round() as u32;
    data::views::eval_view_with(img, resize, size as u32, views.mean, views.std)
}

/// Features `[n, dim]` (pooled as the heads are, `heads.pool`) of `n` images (`[n, 3, s, s]` row-major) from `model` (the EMA or
/// the live encoder) at every head's tap, in `Trainer::specs` order; in batches of
/// [`EMBED_BATCH`].
pub fn embed_heads(t: &Trainer, model: &Vit, imgs: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>> {
    if n == 0 || imgs.is_empty() {
        return Ok(vec![Vec::new(); t.specs.len()]);
    }
    let size = ((imgs.len() / n / 3) as f64).sqrt() as usize;
    let taps: Vec<Tap> = t.specs.iter().map(|s| s.block).collect();
    let chunks = features::chunks_of(&imgs, [n, 3, size, size], EMBED_BATCH);
    let feats = features::extract(model, chunks, &taps, t.cfg.heads.pool, &t.device, |_| {})?;
    Ok(feats.into_iter().map(|f| f.data).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_disjoint_cover_the_range_evenly() {
        assert_eq!(spread(10, 5), vec![0, 2, 4, 6, 8]);
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        let (b, q) = disjoint(100, 30, 10);
        assert_eq!((b.len(), q.len()), (30, 10));
        assert!(b.iter().all(|i| !q.contains(i)));
        // queries spread over the whole range, not bunched at one end
        assert!(q[0] < 15 && *q.last().unwrap() > 85, "{q:?}");
        let (b, q) = disjoint(5, 30, 10);
        assert_eq!(b.len() + q.len(), 5);
        assert!(!q.is_empty() && !b.is_empty());
    }
}
