//! Online-evaluation results of a run as the Layers tab needs them: per head (block) and step,
//! each protocol's metrics, their curves, and the blocks × steps heat map of one metric.

use super::series::{Admit, Thinning, Timeline, retain_even};
use crate::runlog::{EvalEvent, EvalHead};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Where a head reads the encoder: a block's raw output or the encoder's final output (`main`).
/// Ordered as the blocks are (blocks ascending, the output last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tap {
    /// 0-indexed block.
    Block(usize),
    /// The encoder output (after the final norm of pre-norm models).
    Output,
}

impl Tap {
    /// The tap of an eval event's head (`block: null` is the output).
    pub fn of_eval(head: &EvalHead) -> Self {
        head.block.map_or(Tap::Output, Tap::Block)
    }

    /// The tap by the naming convention (`main`, `cls<block>`), for heads not yet evaluated.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "main" => Some(Tap::Output),
            _ => name.strip_prefix("cls")?.parse().ok().map(Tap::Block),
        }
    }
}

impl fmt::Display for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tap::Block(b) => write!(f, "block {b}"),
            Tap::Output => f.write_str("output"),
        }
    }
}

/// An evaluation protocol of the `eval` event (method.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Knn,
    Cluster,
    Probe,
    Lowshot,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::Knn,
        Protocol::Cluster,
        Protocol::Probe,
        Protocol::Lowshot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Knn => "knn",
            Protocol::Cluster => "cluster",
            Protocol::Probe => "probe",
            Protocol::Lowshot => "lowshot",
        }
    }

    fn results(self, head: &EvalHead) -> Option<&BTreeMap<String, Option<f64>>> {
        match self {
            Protocol::Knn => head.knn.as_ref(),
            Protocol::Cluster => head.cluster.as_ref(),
            Protocol::Probe => head.probe.as_ref(),
            Protocol::Lowshot => head.lowshot.as_ref(),
        }
    }
}

/// One metric of one protocol, e.g. `knn.k20` or `cluster.nmi`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    pub protocol: Protocol,
    pub metric: String,
}

impl MetricKey {
    pub fn new(protocol: Protocol, metric: impl Into<String>) -> Self {
        Self {
            protocol,
            metric: metric.into(),
        }
    }

    /// kNN accuracy with `k` neighbours.
    pub fn knn(k: usize) -> Self {
        Self::new(Protocol::Knn, format!("k{k}"))
    }

    /// The value in one head's results: None when the protocol did not run, the metric is
    /// absent, or it was undefined (`null`).
    pub fn value(&self, head: &EvalHead) -> Option<f64> {
        let v = self.protocol.results(head)?.get(&self.metric).copied()??;
        v.is_finite().then_some(v)
    }

    /// `k` of a kNN metric.
    pub fn knn_k(&self) -> Option<usize> {
        (self.protocol == Protocol::Knn)
            .then(|| self.metric.strip_prefix('k')?.parse().ok())
            .flatten()
    }
}

impl fmt::Display for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.protocol.name(), self.metric)
    }
}

/// The blocks × steps matrix of one metric; cells are None where a head was not evaluated, its
/// evaluation failed, or the metric is undefined.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeatMap {
    /// Rows in tap order: (head name, tap).
    pub rows: Vec<(String, Tap)>,
    /// Columns: the evaluated steps, in log order.
    pub steps: Vec<u64>,
    /// Row-major `rows.len() × steps.len()`.
    pub cells: Vec<Option<f64>>,
}

impl HeatMap {
    pub fn get(&self, row: usize, col: usize) -> Option<f64> {
        if row >= self.rows.len() || col >= self.steps.len() {
            return None;
        }
        self.cells[row * self.steps.len() + col]
    }

    /// Smallest and largest value (for the colour scale).
    pub fn range(&self) -> Option<(f64, f64)> {
        self.cells.iter().flatten().fold(None, |acc, &v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
    }
}

/// Every `eval` event of a run (bounded by thinning), with an x timeline for curves.
#[derive(Clone, Debug)]
pub struct EvalTable {
    timeline: Timeline,
    records: Vec<EvalEvent>,
    thin: Thinning,
    /// Every head seen and its tap.
    taps: BTreeMap<String, Tap>,
}

impl EvalTable {
    pub fn new(cap: usize) -> Self {
        Self {
            timeline: Timeline::default(),
            records: Vec::new(),
            thin: Thinning::new(cap),
            taps: BTreeMap::new(),
        }
    }

    /// Adds one event; `wall` is the run's estimated training time at that point.
    pub fn push(&mut self, e: EvalEvent, wall: f64) {
        for (name, head) in &e.heads {
            self.taps.insert(name.clone(), Tap::of_eval(head));
        }
        match self.thin.admit(self.records.len()) {
            Admit::Skip => return,
            Admit::Push => {}
            Admit::HalveThenPush => {
                retain_even(&mut self.records);
                self.timeline.retain_even();
            }
        }
        self.timeline.push(e.step, e.epoch, wall);
        self.records.push(e);
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub(super) fn timeline_mut(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    /// The events held, in log order.
    pub fn records(&self) -> &[EvalEvent] {
        &self.records
    }

    pub fn latest(&self) -> Option<&EvalEvent> {
        self.records.last()
    }

    /// The tap of a head seen in an eval event.
    pub fn tap(&self, head: &str) -> Option<Tap> {
        self.taps.get(head).copied()
    }

    /// Every evaluated head in tap order.
    pub fn heads(&self) -> Vec<(String, Tap)> {
        let mut v: Vec<(String, Tap)> = self.taps.iter().map(|(n, &t)| (n.clone(), t)).collect();
        v.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        v
    }

    /// Every metric present in any held event.
    pub fn metrics(&self) -> BTreeSet<MetricKey> {
        let mut out = BTreeSet::new();
        for head in self.records().iter().flat_map(|r| r.heads.values()) {
            for p in Protocol::ALL {
                for name in p.results(head).into_iter().flat_map(|m| m.keys()) {
                    out.insert(MetricKey::new(p, name.clone()));
                }
            }
        }
        out
    }

    /// The kNN `k`s present, ascending.
    pub fn knn_ks(&self) -> Vec<usize> {
        self.metrics().iter().filter_map(MetricKey::knn_k).collect()
    }

    /// One head's values of `metric`, one per held event (NaN where absent), aligned with
    /// [`EvalTable::timeline`] for `series::points`.
    pub fn values(&self, head: &str, metric: &MetricKey) -> Vec<f64> {
        self.records()
            .iter()
            .map(|r| r.heads.get(head).and_then(|h| metric.value(h)))
            .map(|v| v.unwrap_or(f64::NAN))
            .collect()
    }

    /// The blocks × steps matrix of `metric` over every held event.
    pub fn heat_map(&self, metric: &MetricKey) -> HeatMap {
        let rows = self.heads();
        let steps: Vec<u64> = self.records().iter().map(|r| r.step).collect();
        let mut cells = Vec::with_capacity(rows.len() * steps.len());
        for (name, _) in &rows {
            let row = self.records().iter().map(|r| {
                let head = r.heads.get(name)?;
                metric.value(head)
            });
            cells.extend(row);
        }
        HeatMap { rows, steps, cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(json: &str) -> EvalEvent {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn heat_map_orders_blocks_and_leaves_missing_values_empty() {
        let mut t = EvalTable::new(100);
        // step 0: main and cls3 (cls3's k20 undefined); step 10: cls1 joins, main failed
        t.push(
            eval(
                r#"{"step":0,"epoch":0.0,"split":"test","samples":{"bank":8,"queries":4},
                "heads":{"main":{"block":null,"knn":{"k10":0.5,"k20":0.55}},
                         "cls3":{"block":3,"knn":{"k10":0.4,"k20":null},"cluster":{"nmi":0.2}}}}"#,
            ),
            0.0,
        );
        t.push(
            eval(
                r#"{"step":10,"epoch":1.0,"encoder":"live","split":"test","samples":{"bank":8,"queries":4},
                "heads":{"main":{"block":null,"error":"out of memory"},
                         "cls3":{"block":3,"knn":{"k10":0.6,"k20":0.65}},
                         "cls1":{"block":1,"knn":{"k10":0.3,"k20":0.35}}}}"#,
            ),
            5.0,
        );
        let names: Vec<(String, Tap)> = t.heads();
        assert_eq!(
            names,
            vec![
                ("cls1".into(), Tap::Block(1)),
                ("cls3".into(), Tap::Block(3)),
                ("main".into(), Tap::Output)
            ]
        );
        let h = t.heat_map(&MetricKey::knn(10));
        assert_eq!(h.steps, vec![0, 10]);
        assert_eq!(
            h.cells,
            vec![None, Some(0.3), Some(0.4), Some(0.6), Some(0.5), None]
        );
        assert_eq!(h.get(1, 1), Some(0.6));
        assert_eq!(h.get(9, 0), None);
        assert_eq!(h.range(), Some((0.3, 0.6)));
        let k20 = t.heat_map(&MetricKey::knn(20));
        assert_eq!(k20.get(1, 0), None, "null is a missing value");
        assert_eq!(t.knn_ks(), vec![10, 20]);
        assert!(
            t.metrics()
                .contains(&MetricKey::new(Protocol::Cluster, "nmi"))
        );
        let v = t.values("cls3", &MetricKey::new(Protocol::Cluster, "nmi"));
        assert!(v[0] == 0.2 && v[1].is_nan(), "{v:?}");
        assert_eq!(MetricKey::knn(20).to_string(), "knn.k20");
        assert_eq!(Tap::from_name("cls11"), Some(Tap::Block(11)));
        assert_eq!(Tap::from_name("head"), None);
    }

    #[test]
    fn many_evals_are_thinned_with_the_timeline_aligned() {
        let mut t = EvalTable::new(4);
        for s in 0..20u64 {
            let e = format!(
                r#"{{"step":{s},"epoch":{s}.0,"split":"t","samples":{{"bank":1,"queries":1}},"heads":{{}}}}"#
            );
            t.push(eval(&e), s as f64);
        }
        let steps: Vec<u64> = t.records().iter().map(|r| r.step).collect();
        assert_eq!(steps, t.timeline().steps());
        assert!(steps.len() <= 4 && steps[0] == 0, "{steps:?}");
    }
}
