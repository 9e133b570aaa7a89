//! The embedding map tab: one block's probe features at a snapshot step, projected to 2-D (PCA
//! aligned across steps, or t-SNE), coloured by label or k-means; hover, click, box selection.

use super::inspector;
use super::palette;
use super::points::{PointCloud, PointsCallback};
use super::runs::OpenRun;
use super::thumbs::{self, Thumbs};
use crate::runlog::RunKind;
use crate::view::RunModel;
use crate::view::embedding::{
    MapWorker, Method, NeighbourList, Projected, Reply, Request, SnapshotRef,
};
use eframe::egui::{self, Color32, Pos2, Ui};
use egui_plot::{Legend, Plot, PlotPoint, PlotPoints, Points, Polygon};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Screen distance within which the pointer picks a point.
const PICK_PX: f32 = 8.0;

/// What the points are coloured by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Colour {
    #[default]
    Label,
    /// k-means clusters of the shown block's features.
    Cluster,
}

/// The map's settings (persisted).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MapSettings {
    pub method: Method,
    pub colour: Colour,
    /// k of the k-means colouring.
    pub clusters: usize,
    /// Neighbours listed by the inspector.
    pub neighbours: usize,
}

impl Default for MapSettings {
    fn default() -> Self {
        Self {
            method: Method::Pca,
            colour: Colour::Label,
            clusters: 10,
            neighbours: 8,
        }
    }
}

/// The neighbours of the selected sample, as the worker answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub query: usize,
    pub k: usize,
    pub lists: Vec<NeighbourList>,
}

/// Positions of one step, and whether a t-SNE still refines them.
struct Shown {
    points: Arc<Projected>,
    running: Option<(usize, usize)>,
}

/// The points of a frame as the GPU draws them, with the legend's entries and the data bounds.
struct Layer {
    /// Name, colour and one point of each colour group (the legend's entry).
    legend: Vec<(String, Color32, [f64; 2])>,
    cloud: Arc<PointCloud>,
    /// min x, min y, max x, max y of the points.
    bounds: [f64; 4],
}

/// The map of one run: the worker, what it answered, and what is selected.
#[derive(Default)]
pub struct MapState {
    worker: Option<MapWorker>,
    /// The block (snapshot tensor) shown.
    pub block: Option<String>,
    /// The snapshot step shown; `None` follows the newest.
    pub step: Option<u64>,
    blocks: Vec<String>,
    described: Option<u64>,
    projections: HashMap<(String, Method), BTreeMap<u64, Shown>>,
    asked: HashSet<(String, Method, u64, usize)>,
    clusters: HashMap<(String, u64, usize), Arc<Vec<u32>>>,
    asked_clusters: HashSet<(String, u64, usize)>,
    /// The clicked sample (dataset index).
    pub selected: Option<usize>,
    /// Its neighbours.
    pub neighbours: Option<Answer>,
    asked_neighbours: Option<(usize, usize, Vec<String>, Vec<u64>)>,
    pub thumbs: Option<Thumbs>,
    asked_thumbs: bool,
    /// The newest `nn_examples` event whose pair images were asked for, and their atlas.
    pub pair_thumbs: Option<(crate::runlog::NnExamples, Result<Thumbs, String>)>,
    asked_pairs: Option<u64>,
    /// Samples inside the last box selection.
    pub selection: Vec<usize>,
    drag_from: Option<PlotPoint>,
    /// Blocks the inspector lists (empty: the shown block).
    pub inspector_blocks: BTreeSet<String>,
    /// Files or computations that failed, shown above the map.
    pub failures: Vec<String>,
    /// Where each shown point was drawn last frame (dataset index → screen), for tests.
    last_screen: Vec<(usize, Pos2)>,
    last_drawn: Option<Drawn>,
    layer: Option<(GroupKey, Arc<Layer>)>,
    /// The thumbnails could not be read (so a screenshot does not wait for them).
    thumbs_failed: bool,
}

impl MapState {
    /// The blocks the snapshots hold, in block order.
    pub fn blocks(&self) -> &[String] {
        &self.blocks
    }

    /// Screen position of sample `index` in the last frame's map.
    pub fn screen_pos(&self, index: usize) -> Option<Pos2> {
        self.last_screen
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, p)| *p)
    }

    /// Dataset indices drawn in the last frame.
    pub fn drawn(&self) -> Vec<usize> {
        self.last_screen.iter().map(|(i, _)| *i).collect()
    }

    /// True once the map shows finished positions and, with a sample selected, its neighbours
    /// (what a screenshot waits for).
    pub fn settled(&self) -> bool {
        let drawn = self.last_drawn.as_ref().is_some_and(|d| !d.running);
        let nn =
            self.selected.is_none() || self.neighbours.as_ref().map(|a| a.query) == self.selected;
        drawn && nn && (self.thumbs.is_some() || self.thumbs_failed || !self.asked_thumbs)
    }

    /// What the last frame drew: block, method, step, and whether a t-SNE was still running.
    pub fn last_drawn(&self) -> Option<&Drawn> {
        self.last_drawn.as_ref()
    }
}

/// What a frame of the map showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drawn {
    pub block: String,
    pub method: Method,
    pub step: u64,
    pub running: bool,
}

/// The snapshots the log announced.
fn snapshot_refs(model: &RunModel) -> Vec<SnapshotRef> {
    (model.snapshots().iter())
        .map(|s| SnapshotRef {
            step: s.step,
            file: s.file.clone(),
            name: step_name(model, s.step),
        })
        .collect()
}

/// How snapshot `step` is named: `step N`, or in an inspection (`mimr inspect`, where snapshot
/// i is checkpoint i) that checkpoint's file name.
pub fn step_name(model: &RunModel, step: u64) -> String {
    let inspected = (model.info())
        .filter(|i| i.kind == RunKind::Inspect)
        .and_then(|i| {
            i.config
                .get("checkpoints")?
                .get(step as usize)?
                .get("name")?
                .as_str()
        });
    inspected.map_or_else(|| format!("step {step}"), str::to_string)
}

/// The name of snapshot `step` among `snaps`.
pub fn name_of(snaps: &[SnapshotRef], step: u64) -> String {
    (snaps.iter().find(|s| s.step == step))
        .map_or_else(|| format!("step {step}"), |s| s.name.clone())
}

/// `block.<i>` and head names in block order (`block.2` before `block.10`).
fn block_order(names: &mut [String]) {
    let key = |n: &String| {
        let digits: String = n.chars().filter(|c| c.is_ascii_digit()).collect();
        let kind = if n.starts_with("block.") { 0 } else { 1 };
        (kind, digits.parse::<u64>().unwrap_or(u64::MAX), n.clone())
    };
    names.sort_by_key(key);
}

/// The map tab of `run`.
pub fn show(ui: &mut Ui, run: &mut OpenRun, settings: &mut MapSettings) {
    let snaps = snapshot_refs(&run.model);
    pump(ui.ctx(), run, settings, &snaps);
    let state = &mut run.map;
    if run.files.is_none() {
        ui.label("This run's files cannot be read here (no run directory): no embedding map.");
        return;
    }
    if snaps.is_empty() {
        ui.label(
            "No snapshot yet: the map appears with the first one (run.snapshot_every, or the end of stage 2).",
        );
        return;
    }
    controls(ui, state, settings, &snaps);
    for f in &state.failures {
        ui.colored_label(Color32::from_rgb(213, 94, 0), f);
    }
    egui::Panel::right("inspector")
        .resizable(true)
        .default_size(380.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                inspector::show(ui, &run.model, &mut run.map, settings, &snaps)
            })
        });
    if !run.map.selection.is_empty() {
        egui::Panel::bottom("selection")
            .resizable(true)
            .default_size(150.0)
            .show(ui, |ui| selection_grid(ui, &mut run.map));
    }
    egui::CentralPanel::default().show(ui, |ui| plot(ui, &mut run.map, settings, &snaps));
}

/// Starts the worker, applies its replies, and asks for what the view needs next.
fn pump(ctx: &egui::Context, run: &mut OpenRun, settings: &MapSettings, snaps: &[SnapshotRef]) {
    let (Some(files), state) = (run.files.clone(), &mut run.map) else {
        return;
    };
    if state.worker.is_none() {
        let ctx = ctx.clone();
        match MapWorker::spawn(files, move || ctx.request_repaint()) {
            Ok(w) => state.worker = Some(w),
            Err(e) => {
                state
                    .failures
                    .push(format!("cannot start the map's worker thread: {e}"));
                return;
            }
        }
    }
    let replies = state.worker.as_ref().map(|w| w.drain()).unwrap_or_default();
    for r in replies {
        apply(ctx, state, r);
    }
    if let Some(p) = state.worker.as_ref().and_then(|w| w.pair_thumbnails()) {
        state.pair_thumbs = Some((p.examples, p.atlas.map(|a| Thumbs::new(ctx, a))));
    }
    ask(state, &run.model, settings, snaps);
}

fn apply(ctx: &egui::Context, state: &mut MapState, reply: Reply) {
    match reply {
        Reply::Described { blocks, .. } => {
            let mut blocks = blocks;
            block_order(&mut blocks);
            if state.block.as_ref().is_none_or(|b| !blocks.contains(b)) {
                state.block = blocks.last().cloned();
            }
            state.blocks = blocks;
        }
        Reply::Projection {
            block,
            method,
            step,
            points,
            running,
        } => {
            let m = state.projections.entry((block, method)).or_default();
            m.insert(step, Shown { points, running });
        }
        Reply::Clusters {
            block,
            step,
            k,
            ids,
        } => {
            state.clusters.insert((block, step, k), ids);
        }
        Reply::Neighbours { query, k, lists } => {
            state.neighbours = Some(Answer { query, k, lists });
        }
        Reply::Thumbnails(Ok(atlas)) => state.thumbs = Some(Thumbs::new(ctx, atlas)),
        Reply::Thumbnails(Err(e)) => {
            state.thumbs_failed = true;
            state.failures.push(format!("thumbnails: {e}"));
        }
        Reply::Cancelled { block, step } => {
            // an outdated t-SNE: forget its partial positions so a later visit asks again
            if let Some(m) = state.projections.get_mut(&(block.clone(), Method::Tsne))
                && m.get(&step).is_some_and(|s| s.running.is_some())
            {
                m.remove(&step);
            }
            state
                .asked
                .retain(|k| !(k.0 == block && k.1 == Method::Tsne && k.2 == step));
        }
        Reply::Failed(e) => {
            if !state.failures.contains(&e) {
                state.failures.push(e);
            }
        }
    }
}

/// The step shown: the chosen one when it exists, else the newest.
pub fn current_step(state: &MapState, snaps: &[SnapshotRef]) -> Option<u64> {
    let newest = snaps.last().map(|s| s.step);
    state
        .step
        .filter(|s| snaps.iter().any(|r| r.step == *s))
        .or(newest)
}

fn ask(state: &mut MapState, model: &RunModel, settings: &MapSettings, snaps: &[SnapshotRef]) {
    let Some(worker) = &state.worker else { return };
    if let Some(ex) = (model.nn_examples())
        .filter(|e| e.thumbnails.is_some() && state.asked_pairs != Some(e.step))
    {
        state.asked_pairs = Some(ex.step);
        worker.send(Request::PairThumbnails(ex.clone()));
    }
    let Some(newest) = snaps.last() else { return };
    if state.described != Some(newest.step) {
        state.described = Some(newest.step);
        worker.send(Request::Describe(newest.clone()));
    }
    if !state.asked_thumbs
        && let Some(t) = model.thumbnails()
    {
        state.asked_thumbs = true;
        worker.send(Request::Thumbnails {
            image: t.image.clone(),
            index: t.index.clone(),
        });
    }
    let (Some(block), Some(step)) = (state.block.clone(), current_step(state, snaps)) else {
        return;
    };
    let focus = match settings.method {
        Method::Pca => 0,
        Method::Tsne => step,
    };
    // PCA is redone when snapshots arrive; a t-SNE only for its own step
    let count = match settings.method {
        Method::Pca => snaps.len(),
        Method::Tsne => 0,
    };
    if state
        .asked
        .insert((block.clone(), settings.method, focus, count))
    {
        worker.send(Request::Project {
            block: block.clone(),
            method: settings.method,
            snapshots: snaps.to_vec(),
            focus: step,
        });
    }
    if settings.colour == Colour::Cluster {
        let key = (block.clone(), step, settings.clusters);
        if state.asked_clusters.insert(key) {
            let snapshot = snaps.iter().find(|s| s.step == step).cloned();
            if let Some(snapshot) = snapshot {
                worker.send(Request::Clusters {
                    block: block.clone(),
                    snapshot,
                    k: settings.clusters,
                });
            }
        }
    }
    ask_neighbours(state, settings, snaps, &block, step);
}

fn ask_neighbours(
    state: &mut MapState,
    settings: &MapSettings,
    snaps: &[SnapshotRef],
    block: &str,
    step: u64,
) {
    let (Some(worker), Some(query)) = (&state.worker, state.selected) else {
        return;
    };
    let mut blocks: Vec<String> = state.inspector_blocks.iter().cloned().collect();
    if blocks.is_empty() {
        blocks.push(block.to_string());
    }
    let mut steps: Vec<u64> = snaps.first().map(|s| s.step).into_iter().collect();
    if !steps.contains(&step) {
        steps.push(step);
    }
    let key = (query, settings.neighbours, blocks.clone(), steps.clone());
    if state.asked_neighbours.as_ref() == Some(&key) {
        return;
    }
    state.asked_neighbours = Some(key);
    let snapshots = (snaps.iter())
        .filter(|s| steps.contains(&s.step))
        .cloned()
        .collect();
    worker.send(Request::Neighbours {
        query,
        blocks,
        snapshots,
        k: settings.neighbours,
    });
}

fn controls(ui: &mut Ui, state: &mut MapState, settings: &mut MapSettings, snaps: &[SnapshotRef]) {
    ui.horizontal_wrapped(|ui| {
        let shown = state.block.clone().unwrap_or_else(|| "(reading)".into());
        egui::ComboBox::from_label("block")
            .selected_text(shown)
            .show_ui(ui, |ui| {
                for b in state.blocks.clone() {
                    ui.selectable_value(&mut state.block, Some(b.clone()), b);
                }
            });
        egui::ComboBox::from_label("projection")
            .selected_text(settings.method.label())
            .show_ui(ui, |ui| {
                for m in Method::ALL {
                    ui.selectable_value(&mut settings.method, m, m.label());
                }
            });
        egui::ComboBox::from_label("colour")
            .selected_text(match settings.colour {
                Colour::Label => "label",
                Colour::Cluster => "k-means",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut settings.colour, Colour::Label, "label");
                ui.selectable_value(&mut settings.colour, Colour::Cluster, "k-means");
            });
        if settings.colour == Colour::Cluster {
            ui.add(egui::Slider::new(&mut settings.clusters, 2..=30).text("clusters"));
        }
        scrubber(ui, state, snaps);
    });
}

/// The step scrubber over the snapshots, with "follow newest".
fn scrubber(ui: &mut Ui, state: &mut MapState, snaps: &[SnapshotRef]) {
    let Some(step) = current_step(state, snaps) else {
        return;
    };
    let mut i = snaps.iter().position(|s| s.step == step).unwrap_or(0);
    let last = snaps.len().saturating_sub(1);
    let slider = egui::Slider::new(&mut i, 0..=last)
        .text(format!("snapshot ({})", name_of(snaps, step)))
        .show_value(false);
    if ui.add_enabled(last > 0, slider).changed() {
        state.step = snaps.get(i).map(|s| s.step);
    }
    let mut follow = state.step.is_none();
    if ui.checkbox(&mut follow, "follow newest").changed() {
        state.step = if follow { None } else { Some(step) };
    }
}

/// The points of the shown (block, method, step): that step's, else the nearest computed one.
fn shown_points<'a>(
    state: &'a MapState,
    settings: &MapSettings,
    step: u64,
) -> Option<(&'a Shown, u64)> {
    let block = state.block.clone()?;
    let m = state.projections.get(&(block, settings.method))?;
    if let Some(s) = m.get(&step) {
        return Some((s, step));
    }
    m.iter()
        .min_by_key(|(s, _)| s.abs_diff(step))
        .map(|(s, v)| (v, *s))
}

/// What the colour groups depend on: the positions (by identity), the colouring, whether the
/// clusters and the class names have arrived.
type GroupKey = (Arc<Projected>, Colour, usize, bool, bool);

/// The frame's layer, rebuilt only when what it depends on changed (not every frame).
fn cached_layer(
    state: &mut MapState,
    settings: &MapSettings,
    p: &Arc<Projected>,
    step: u64,
) -> Arc<Layer> {
    let has_clusters = (state.block.clone())
        .is_some_and(|b| state.clusters.contains_key(&(b, step, settings.clusters)));
    let key = (
        p.clone(),
        settings.colour,
        settings.clusters,
        has_clusters,
        state.thumbs.is_some(),
    );
    if let Some((k, g)) = &state.layer
        && Arc::ptr_eq(&k.0, &key.0)
        && (k.1, k.2, k.3, k.4) == (key.1, key.2, key.3, key.4)
    {
        return g.clone();
    }
    let g = Arc::new(layer(state, settings, p, step));
    state.layer = Some((key, g.clone()));
    g
}

/// Colours the points (by label or cluster) and packs them for the GPU.
fn layer(state: &MapState, settings: &MapSettings, p: &Projected, step: u64) -> Layer {
    let clusters = (settings.colour == Colour::Cluster)
        .then(|| {
            let block = state.block.clone()?;
            state
                .clusters
                .get(&(block, step, settings.clusters))
                .cloned()
        })
        .flatten()
        .filter(|c| c.len() == p.xy.len());
    let group = |r: usize| -> Option<u32> {
        match &clusters {
            Some(c) => Some(c[r]),
            None => p.labels[r],
        }
    };
    let colour = |g: Option<u32>| g.map_or(Color32::GRAY, |k| palette::category(k as usize));
    let mut legend: BTreeMap<Option<u32>, [f64; 2]> = BTreeMap::new();
    let mut bounds = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for (r, xy) in p.xy.iter().enumerate() {
        let (x, y) = (xy[0] as f64, xy[1] as f64);
        legend.entry(group(r)).or_insert([x, y]);
        bounds = [
            bounds[0].min(x),
            bounds[1].min(y),
            bounds[2].max(x),
            bounds[3].max(y),
        ];
    }
    let name = |g: Option<u32>| match (g, &clusters, &state.thumbs) {
        (None, _, _) => "unlabelled".into(),
        (Some(c), Some(_), _) => format!("cluster {c}"),
        (Some(l), None, Some(t)) => t.atlas.class_name(l),
        (Some(l), None, None) => format!("label {l}"),
    };
    let cloud = PointCloud::new((0..p.xy.len()).map(|r| (p.xy[r], colour(group(r)))));
    Layer {
        legend: (legend.into_iter())
            .map(|(g, first)| (name(g), colour(g), first))
            .collect(),
        cloud: Arc::new(cloud),
        bounds,
    }
}

fn plot(ui: &mut Ui, state: &mut MapState, settings: &MapSettings, snaps: &[SnapshotRef]) {
    let Some(step) = current_step(state, snaps) else {
        return;
    };
    let Some((shown, drawn_step)) = shown_points(state, settings, step) else {
        ui.label(format!("computing the {} map...", settings.method.label()));
        state.last_screen.clear();
        state.last_drawn = None;
        return;
    };
    let (points, running) = (shown.points.clone(), shown.running);
    state.last_drawn = state.block.clone().map(|block| Drawn {
        block,
        method: settings.method,
        step: drawn_step,
        running: running.is_some(),
    });
    let status = match (running, drawn_step == step) {
        (Some((i, n)), _) => format!("t-SNE iteration {i}/{n}"),
        (None, false) => format!(
            "showing {} while {} is computed",
            name_of(snaps, drawn_step),
            name_of(snaps, step)
        ),
        (None, true) => format!("{} points at {}", points.xy.len(), name_of(snaps, step)),
    };
    ui.label(format!(
        "{status}. Drag to pan, scroll to zoom, shift-drag to select, click a point to inspect."
    ));
    let layer = cached_layer(state, settings, &points, drawn_step);
    let shift = ui.input(|i| i.modifiers.shift);
    let highlight = highlighted(state, &points);
    // larger dots for small probe sets, 1.5 px for hundreds of thousands
    let radius = (80.0 / (points.xy.len().max(1) as f32).sqrt()).clamp(1.5, 5.0);
    let mut drag_from = state.drag_from;
    let mut boxed: Option<[PlotPoint; 2]> = None;
    // the GPU's points go under the plot's grid and legend: reserve their place first
    let slot = ui.painter().add(egui::Shape::Noop);
    let [x0, y0, x1, y1] = layer.bounds;
    let resp = Plot::new(("map", state.block.clone()))
        .data_aspect(1.0)
        .legend(Legend::default())
        .allow_drag(!shift)
        .show_axes(false)
        .show_background(false)
        .include_x(x0)
        .include_x(x1)
        .include_y(y0)
        .include_y(y1)
        .show(ui, |p| {
            for (name, colour, first) in &layer.legend {
                // one point per group carries its legend entry; the GPU draws them all
                let carrier = Points::new(name.clone(), vec![*first]).color(*colour);
                p.points(carrier.radius(0.0));
            }
            if !highlight.is_empty() {
                let pts = Points::new("selected", highlight.clone())
                    .color(Color32::WHITE)
                    .filled(false)
                    .radius(radius + 3.0);
                p.points(pts);
            }
            boxed = box_select(p, shift, &mut drag_from);
        });
    let frame = *resp.transform.frame();
    let b = resp.transform.bounds();
    let callback = PointsCallback {
        cloud: layer.cloud.clone(),
        bounds: [b.min()[0], b.min()[1], b.max()[0], b.max()[1]],
        rect: frame,
        radius,
    };
    ui.painter()
        .with_clip_rect(frame)
        .set(slot, callback.shape());
    state.drag_from = drag_from;
    if let Some([a, b]) = boxed {
        state.selection = inside(&points, a, b);
    }
    record_screen(state, &points, &resp.transform);
    pointer(state, &resp.response, &points);
}

/// Shift-drag draws a box; returns its corners when the drag ends.
fn box_select(
    p: &mut egui_plot::PlotUi<'_>,
    shift: bool,
    from: &mut Option<PlotPoint>,
) -> Option<[PlotPoint; 2]> {
    let r = p.response().clone();
    if shift && r.drag_started() {
        // from where the button went down, not where the drag was recognised
        let origin = p.ctx().input(|i| i.pointer.press_origin());
        *from = origin.map(|o| p.transform().value_from_position(o));
    }
    let a = (*from)?;
    let Some(b) = p.pointer_coordinate() else {
        if r.drag_stopped() {
            *from = None;
        }
        return None;
    };
    let corners = vec![[a.x, a.y], [b.x, a.y], [b.x, b.y], [a.x, b.y]];
    p.polygon(
        Polygon::new("selection", PlotPoints::from(corners))
            .fill_color(Color32::from_black_alpha(30)),
    );
    if r.drag_stopped() || !r.dragged() {
        *from = None;
        return Some([a, b]);
    }
    None
}

/// Samples inside the box `a`–`b`.
fn inside(p: &Projected, a: PlotPoint, b: PlotPoint) -> Vec<usize> {
    let (x0, x1) = (a.x.min(b.x), a.x.max(b.x));
    let (y0, y1) = (a.y.min(b.y), a.y.max(b.y));
    (p.xy.iter().zip(&p.index))
        .filter(|(xy, _)| {
            let (x, y) = (xy[0] as f64, xy[1] as f64);
            x >= x0 && x <= x1 && y >= y0 && y <= y1
        })
        .map(|(_, &i)| i)
        .collect()
}

/// The selected sample and its neighbours at the shown block/step, as plot points.
fn highlighted(state: &MapState, p: &Projected) -> Vec<[f64; 2]> {
    let Some(q) = state.selected else {
        return Vec::new();
    };
    let mut wanted = vec![q];
    if let Some(a) = state.neighbours.as_ref().filter(|a| a.query == q) {
        let shown = |l: &&NeighbourList| Some(&l.block) == state.block.as_ref();
        if let Some(Ok(list)) = a.lists.iter().rfind(shown).map(|l| &l.list) {
            wanted.extend(list.iter().map(|n| n.index));
        }
    }
    (p.index.iter().zip(&p.xy))
        .filter(|(i, _)| wanted.contains(i))
        .map(|(_, xy)| [xy[0] as f64, xy[1] as f64])
        .collect()
}

fn record_screen(state: &mut MapState, p: &Projected, t: &egui_plot::PlotTransform) {
    state.last_screen = (p.index.iter().zip(&p.xy))
        .map(|(&i, xy)| {
            let pos = t.position_from_point(&PlotPoint::new(xy[0] as f64, xy[1] as f64));
            (i, pos)
        })
        .filter(|(_, pos)| t.frame().contains(*pos))
        .collect();
}

/// The drawn sample nearest to `pos`, within [`PICK_PX`].
fn pick(state: &MapState, pos: Pos2) -> Option<usize> {
    (state.last_screen.iter())
        .map(|(i, p)| (*i, p.distance(pos)))
        .filter(|(_, d)| *d <= PICK_PX)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Hover shows the thumbnail and label; a click selects the sample for the inspector.
fn pointer(state: &mut MapState, response: &egui::Response, p: &Projected) {
    let Some(pos) = response.hover_pos().or(response.interact_pointer_pos()) else {
        return;
    };
    let Some(sample) = pick(state, pos) else {
        return;
    };
    if response.clicked() {
        state.selected = Some(sample);
    }
    let label = (p.index.iter().position(|&i| i == sample)).and_then(|r| p.labels[r]);
    let thumbs = state.thumbs.as_ref();
    let name = thumbs.map_or_else(
        || label.map_or("unlabelled".into(), |l| format!("label {l}")),
        |t| t.label_name(label),
    );
    response.clone().on_hover_ui_at_pointer(|ui| {
        thumbs::show(ui, thumbs, sample, 96.0, None);
        ui.label(format!("#{sample}  {name}"));
    });
}

/// The box selection's images.
fn selection_grid(ui: &mut Ui, state: &mut MapState) {
    ui.horizontal(|ui| {
        ui.label(format!("{} selected", state.selection.len()));
        if ui.button("Clear selection").clicked() {
            state.selection.clear();
        }
    });
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.horizontal_wrapped(|ui| {
            for &s in state.selection.iter().take(2000) {
                let r = thumbs::show(ui, state.thumbs.as_ref(), s, 48.0, None);
                if r.clicked() {
                    state.selected = Some(s);
                }
            }
        });
    });
}
