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
const EMBED_BATCH: usize = 128;

/// Fixed bank and query samples, and the protocols to score them with.
pub struct OnlineEval {
    cfg: OnlineEvalConfig,
    bank: Part,
    queries: Part,
}

/// Some samples of one dataset split.
struct Part {
    ds: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

/// Labelled features of one part, per head (in `Trainer::specs` order).
struct Embedded {
    feats: Vec<Vec<f32>>,
    labels: Vec<u32>,
    dim: usize,
    skipped: usize,
}

impl OnlineEval {
    /// The evaluation sets for `cfg` over the training split `train` (before `data.limit`);
    /// `None` when online evaluation is off. The query split is opened from `data.train`.
    pub fn new(cfg: &RefineConfig, train: Arc<dyn Dataset>) -> Result<Option<Self>> {
        let e = &cfg.eval;
        if !e.enabled() {
            return Ok(None);
        }
        let (split, train_split) = (e.split, cfg.data.split);
        if split != train_split && !train.has_own_split() {
            tracing::warn!(
                "eval.split = \"{split}\", but {} has no train/test split: bank and queries are disjoint parts of the training samples",
                train.describe()
            );
        }
        let (bank, queries) = if split == train_split || !train.has_own_split() {
            let (b, q) = disjoint(train.len(), e.train_size, e.test_size);
            ensure!(
                !b.is_empty() && !q.is_empty(),
                "eval: the {} training samples cannot hold a bank and queries: lower eval.train_size / eval.test_size",
                train.len()
            );
            let part = |indices| Part {
                ds: train.clone(),
                indices,
            };
            (part(b), part(q))
        } else {
            let test: Arc<dyn Dataset> = data::open(&cfg.data.train, split)
                .with_context(|| format!("eval.split = \"{}\": set eval.split = \"{}\" to draw bank and queries (disjoint) from the training split, or eval.every_epochs = 0", e.split, cfg.data.split))?
                .into();
            let bank = spread(train.len(), e.train_size);
            let queries = spread(test.len(), e.test_size);
            (
                Part {
                    ds: train,
                    indices: bank,
                },
                Part {
                    ds: test,
                    indices: queries,
                },
            )
        };
        Ok(Some(Self {
            cfg: e.clone(),
            bank,
            queries,
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
        let bank = embed_part(t, model, &self.bank)?;
        let queries = embed_part(t, model, &self.queries)?;
        let n_classes = protocols::n_classes(&bank.labels, &queries.labels);
        ensure!(
            n_classes >= 2,
            "eval: the evaluation samples hold fewer than 2 classes: raise eval.train_size or set eval.every_epochs = 0"
        );
        // k above the readable bank size would be dropped; keep at least the bank size itself
        let mut knn_ks: Vec<usize> = self
            .cfg
            .knn_k
            .iter()
            .map(|&k| k.min(bank.labels.len()))
            .collect();
        knn_ks.dedup();
        let opts = Options {
            knn_ks,
            probe: crate::eval::probe::ProbeConfig {
                epochs: self.cfg.probe_epochs,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut heads = std::collections::BTreeMap::new();
        let mut summary = Vec::new();
        for (h, spec) in t.specs.iter().enumerate() {
            let (b, q) = (bank.features(h), queries.features(h));
            let mut entry = EvalHead {
                block: spec.block,
                ..Default::default()
            };
            let scored =
                protocols::evaluate(b, q, n_classes, &self.cfg.protocols, &opts, &t.device)
                    .and_then(|r| {
                        let line = format!("{} {}", spec.name, headline(&r));
                        Ok((line, serde_json::from_value::<EvalHead>(r)?))
                    });
            match scored {
                Ok((line, e)) => {
                    summary.push(line);
                    entry = EvalHead {
                        block: spec.block,
                        ..e
                    };
                }
                Err(e) => {
                    // an evaluation problem must not end hours of training: log it and go on
                    tracing::warn!("online evaluation of head {} failed: {e:#}", spec.name);
                    entry.error = Some(format!("{e:#}"));
                }
            }
            heads.insert(spec.name.clone(), entry);
        }
        let name = match which {
            Encoder::Ema => "eval",
            Encoder::Live => "eval, live encoder",
        };
        tracing::info!("[{name}] step {}: {}", t.step, summary.join(", "));
        log.write(&Event::Eval(EvalEvent {
            step: t.step,
            encoder: which,
            epoch,
            split: self.cfg.split.name().into(),
            samples: EvalSamples {
                bank: bank.labels.len(),
                queries: queries.labels.len(),
                skipped: bank.skipped + queries.skipped,
            },
            heads,
        }))
    }
}

impl Embedded {
    fn features(&self, head: usize) -> Features<'_> {
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

/// Decodes the part (eval transform with the run's normalisation), skipping unreadable samples,
/// and embeds it.
fn embed_part(t: &Trainer, model: &Vit, part: &Part) -> Result<Embedded> {
    let size = t.cfg.data.views.global_size();
    let (mut feats, mut labels, mut skipped) = (vec![Vec::new(); t.specs.len()], Vec::new(), 0);
    let mut dim = 0;
    for chunk in part.indices.chunks(EMBED_BATCH) {
        let mut imgs = Vec::new();
        for &i in chunk {
            let Some(s) = data::get_or_skip(part.ds.as_ref(), i, &mut skipped) else {
                continue;
            };
            let label = s.label.with_context(|| {
                format!("eval: sample {i} of {} has no label: online evaluation needs a labelled dataset (set eval.every_epochs = 0)", part.ds.describe())
            })?;
            imgs.extend(eval_image(t, &s.image, size));
            labels.push(label);
        }
        let n = imgs.len() / (3 * size * size);
        if n == 0 {
            continue;
        }
        for (h, f) in embed_heads(t, model, imgs, n)?.into_iter().enumerate() {
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

/// The eval transform (resize to size/0.875, centre crop) normalised like the training views.
pub fn eval_image(t: &Trainer, img: &image::RgbImage, size: usize) -> Vec<f32> {
    let v = &t.cfg.data.views;
    let resize = (size as f64 / 0.875).round() as u32;
    data::views::eval_view_with(img, resize, size as u32, v.mean, v.std)
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
