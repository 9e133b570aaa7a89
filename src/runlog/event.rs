//! Every event a run log holds, as one `#[serde(tag = "type")]` enum; unknown event types read as
//! [`Event::Unknown`] and unknown fields are ignored, so older readers keep working on newer logs.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One line of `events.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// First line: what the run is.
    Header(Header),
    /// Refinement scalars of one step.
    Step(StepEvent),
    /// MAE pre-training scalars of one step.
    PretrainStep(PretrainStep),
    /// The NN pairs the loss used in a logged step.
    NnExamples(NnExamples),
    /// Probe-subset features written to a file.
    Snapshot(Snapshot),
    /// Online evaluation results.
    Eval(EvalEvent),
    /// The probe subset's images as a thumbnail atlas.
    Thumbnails(Thumbnails),
    /// MAE reconstructions of fixed images (minor 4).
    Reconstructions(Reconstructions),
    /// The run completed all its steps.
    End { step: u64 },
    /// An event type this build does not know (written by a newer minor version): skipped.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// Which trainer wrote the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    #[default]
    Refine,
    Pretrain,
    /// `mimr inspect` (minor 3): one snapshot per checkpoint (step i = checkpoint i), no steps.
    Inspect,
}

/// The header line. `config` and `encoder` are kept as JSON so this module needs no model types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Major format version (see the module docs for the compatibility rule).
    pub version: u32,
    #[serde(default)]
    pub minor: u32,
    #[serde(default)]
    pub kind: RunKind,
    /// The resolved run configuration.
    #[serde(default)]
    pub config: Value,
    /// Head names (`main`, `cls<block>`), empty for runs without heads.
    #[serde(default)]
    pub heads: Vec<String>,
    #[serde(default)]
    pub dataset: String,
    #[serde(default)]
    pub device: String,
    /// The encoder's architecture (`VitConfig` as JSON).
    #[serde(default)]
    pub encoder: Value,
}

/// Per-head statistics of a refinement step (method.md §3 item 7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadStep {
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub nn_similarity: f64,
    /// `null` when the data is unlabelled.
    pub nn_accuracy: Option<f64>,
    #[serde(deserialize_with = "nan_if_null")]
    pub global_alignment: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub local_alignment: f64,
}

/// A refinement step: `step` counts the updates done (1-based).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub step: u64,
    pub epoch: u64,
    /// 2 (heads only) or 3 (heads + encoder), method.md §4.2.
    pub stage: u8,
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub img_per_s: f64,
    /// Wall-clock time of logging, seconds since the Unix epoch (minor 2; absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    pub heads: BTreeMap<String, HeadStep>,
}

/// An MAE pre-training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainStep {
    pub step: u64,
    pub epoch: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub img_per_s: f64,
    /// Wall-clock time of logging, seconds since the Unix epoch (minor 2; absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
}

/// One anchor and the queue neighbour picked as its positive.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NnPair {
    /// Dataset index of the anchor (global view 0).
    pub sample: usize,
    /// Dataset index of the picked neighbour (-1 for a queue slot never written).
    pub neighbour: i64,
    /// `null` when either is unlabelled.
    pub same_label: Option<bool>,
}

/// A PNG of fixed query images of a pre-training run: per column the image, its visible patches
/// (masked ones grey) and the MAE's reconstruction pasted among the visible patches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reconstructions {
    pub step: u64,
    /// `reconstructions/step-<step:09>.png`, relative to the run directory.
    pub image: String,
    /// Dataset indices (of the query split) of the columns.
    pub samples: Vec<usize>,
    pub mask_ratio: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NnExamples {
    pub step: u64,
    pub heads: BTreeMap<String, Vec<NnPair>>,
    /// The PNG atlas of [`NnExamples::samples`] (`nn_examples/step-<step:09>.png`, relative to
    /// the run dir; its [`ThumbnailIndex`] has the same name ending `.json`) — minor 3; absent in
    /// older logs and for steps the writer's time budget skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnails: Option<String>,
}

impl NnExamples {
    /// Dataset indices of the anchors and neighbours, each once, in order of first appearance
    /// (heads in name order, per pair the anchor then the neighbour; empty queue slots left out).
    pub fn samples(&self) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        let pairs = self.heads.values().flatten();
        let all = pairs.flat_map(|p| [Some(p.sample), usize::try_from(p.neighbour).ok()]);
        all.flatten().filter(|s| seen.insert(*s)).collect()
    }

    /// The index file of [`NnExamples::thumbnails`] (the PNG's name with `.json`).
    pub fn thumbnail_index(&self) -> Option<String> {
        let image = self.thumbnails.as_deref()?;
        let stem = image.strip_suffix(".png").unwrap_or(image);
        Some(format!("{stem}.json"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub step: u64,
    /// Relative to the run directory.
    pub file: String,
    /// Rows in the file: the readable probe samples, whose dataset indices its `index` tensor holds.
    pub samples: usize,
    /// Probe samples left out as unreadable.
    #[serde(default)]
    pub skipped: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalSamples {
    pub bank: usize,
    pub queries: usize,
    #[serde(default)]
    pub skipped: usize,
}

/// One head's online-evaluation results; each protocol maps metric names to values (`null` when
/// a metric is undefined, e.g. a silhouette of one cluster).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalHead {
    /// The head's block (`null` for `main`, the encoder output).
    pub block: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<BTreeMap<String, Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<BTreeMap<String, Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowshot: Option<BTreeMap<String, Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<BTreeMap<String, Option<f64>>>,
    /// Set when this head's evaluation failed (training went on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which encoder an evaluation embedded with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    /// The EMA encoder (what the paper evaluates and `encoder_ema.safetensors` holds).
    #[default]
    Ema,
    /// The encoder being trained.
    Live,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalEvent {
    pub step: u64,
    /// Absent in logs of earlier builds, which always evaluated the EMA encoder.
    #[serde(default)]
    pub encoder: Encoder,
    #[serde(deserialize_with = "nan_if_null")]
    pub epoch: f64,
    /// The query split.
    pub split: String,
    pub samples: EvalSamples,
    pub heads: BTreeMap<String, EvalHead>,
}

/// Where the probe subset's thumbnails are: `image` (PNG atlas, row-major tiles) and `index`
/// (JSON: tile size, columns, per sample its tile, label; class names), relative to the run dir.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thumbnails {
    pub image: String,
    pub index: String,
    pub samples: usize,
    pub tile: u32,
}

/// `thumbnails.json`: sample `i` of the probe subset is tile `i`, row-major in `columns` columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailIndex {
    pub tile: u32,
    pub columns: u32,
    pub samples: Vec<ThumbnailEntry>,
    /// Class names indexed by label (empty for unlabelled data).
    pub classes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailEntry {
    /// Dataset index of the sample.
    pub sample: usize,
    pub label: Option<u32>,
    /// False for an unreadable sample (its tile is grey).
    pub readable: bool,
}

impl Event {
    /// The step an event belongs to (the header and unknown events have none).
    pub fn step(&self) -> Option<u64> {
        match self {
            Event::Step(e) => Some(e.step),
            Event::PretrainStep(e) => Some(e.step),
            Event::NnExamples(e) => Some(e.step),
            Event::Snapshot(e) => Some(e.step),
            Event::Eval(e) => Some(e.step),
            Event::Reconstructions(e) => Some(e.step),
            Event::End { step } => Some(*step),
            Event::Header(_) | Event::Thumbnails(_) | Event::Unknown => None,
        }
    }
}

/// serde_json writes non-finite floats as `null`; read them back as NaN instead of failing.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_lines_of_earlier_builds_still_parse() {
        let step = r#"{"type":"step","step":3,"epoch":0,"stage":2,"lr":0.001,"img_per_s":12.5,"heads":{"main":{"loss":4.1,"nn_similarity":0.5,"nn_accuracy":null,"global_alignment":0.1,"local_alignment":0.2}}}"#;
        let Event::Step(s) = serde_json::from_str(step).unwrap() else {
            panic!("not a step")
        };
        assert_eq!((s.step, s.stage), (3, 2));
        assert_eq!(s.heads["main"].nn_accuracy, None);
        let eval = r#"{"type":"eval","step":0,"epoch":0.0,"split":"test","samples":{"bank":10,"queries":5,"skipped":0},"heads":{"cls0":{"block":0,"knn":{"k10":0.5},"cluster":{"acc":0.4,"silhouette":null}}}}"#;
        let Event::Eval(e) = serde_json::from_str(eval).unwrap() else {
            panic!("not an eval")
        };
        assert_eq!(e.heads["cls0"].knn.as_ref().unwrap()["k10"], Some(0.5));
        assert_eq!(
            e.heads["cls0"].cluster.as_ref().unwrap()["silhouette"],
            None
        );
    }

    #[test]
    fn nn_examples_without_thumbnails_still_parse_and_list_samples_once() {
        let old = r#"{"type":"nn_examples","step":5,"heads":{"cls0":[{"sample":3,"neighbour":9,"same_label":true}],"main":[{"sample":3,"neighbour":-1,"same_label":null},{"sample":4,"neighbour":3,"same_label":false}]}}"#;
        let Event::NnExamples(e) = serde_json::from_str(old).unwrap() else {
            panic!("not nn_examples")
        };
        assert_eq!((e.step, e.thumbnails.as_deref()), (5, None));
        assert_eq!(e.samples(), vec![3, 9, 4]);
        assert_eq!(e.thumbnail_index(), None);
        assert!(!serde_json::to_string(&e).unwrap().contains("thumbnails"));
        let with = NnExamples {
            thumbnails: Some("nn_examples/step-000000005.png".into()),
            ..e
        };
        let line = serde_json::to_string(&Event::NnExamples(with.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<Event>(&line).unwrap(),
            Event::NnExamples(with.clone())
        );
        let index = with.thumbnail_index();
        assert_eq!(index.as_deref(), Some("nn_examples/step-000000005.json"));
    }

    #[test]
    fn unknown_types_and_fields_are_skipped_and_nan_round_trips() {
        let e: Event = serde_json::from_str(r#"{"type":"gradient_norms","step":1}"#).unwrap();
        assert_eq!(e, Event::Unknown);
        let e: Event = serde_json::from_str(r#"{"type":"end","step":7,"extra":[1,2]}"#).unwrap();
        assert_eq!(e, Event::End { step: 7 });
        let p = Event::PretrainStep(PretrainStep {
            step: 1,
            epoch: 0,
            lr: 0.1,
            img_per_s: 1.0,
            time: None,
            loss: f64::NAN,
        });
        let back: Event = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        let Event::PretrainStep(b) = back else {
            panic!("type changed")
        };
        assert!(b.loss.is_nan());
    }
}
