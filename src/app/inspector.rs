//! The nearest-neighbour inspector beside the map: the clicked sample's top-k cosine neighbours per
//! block at the first and the shown snapshot, and the NN pairs the loss used at the newest step.

use super::map::{MapSettings, MapState, current_step, name_of};
use super::thumbs::{self, Thumbs};
use crate::runlog::NnExamples;
use crate::view::embedding::{NeighbourList, SnapshotRef};
use crate::view::{HeadMetric, RunModel};
use eframe::egui::{self, Color32, Ui};

/// Frame of a neighbour with the query's label, and of one with another label.
const SAME: Color32 = Color32::from_rgb(0, 158, 115);
const OTHER: Color32 = Color32::from_rgb(213, 94, 0);

/// The inspector panel.
pub fn show(
    ui: &mut Ui,
    model: &RunModel,
    state: &mut MapState,
    settings: &mut MapSettings,
    snaps: &[SnapshotRef],
) {
    ui.heading("Nearest neighbours");
    match state.selected {
        None => {
            ui.label("Click a point (or a thumbnail) to list its nearest neighbours.");
        }
        Some(q) => query(ui, state, settings, snaps, q),
    }
    ui.separator();
    loss_pairs(ui, model, state.thumbs.as_ref(), state.pair_thumbs.as_ref());
}

fn query(
    ui: &mut Ui,
    state: &mut MapState,
    settings: &mut MapSettings,
    snaps: &[SnapshotRef],
    q: usize,
) {
    ui.add(egui::Slider::new(&mut settings.neighbours, 1..=32).text("neighbours (k)"));
    block_choice(ui, state);
    let thumbs = state.thumbs.as_ref();
    ui.horizontal(|ui| {
        thumbs::show(ui, thumbs, q, 64.0, None);
        let label = thumbs.and_then(|t| t.atlas.entry(q)).and_then(|e| e.label);
        let name = thumbs.map_or_else(|| format!("{label:?}"), |t| t.label_name(label));
        ui.label(format!("sample #{q}\n{name}"));
    });
    let Some(answer) = state.neighbours.as_ref().filter(|a| a.query == q) else {
        ui.label("computing...");
        return;
    };
    let first = snaps.first().map(|s| s.step);
    let current = current_step(state, snaps);
    let mut blocks: Vec<&str> = answer.lists.iter().map(|l| l.block.as_str()).collect();
    blocks.dedup();
    let mut seen = std::collections::HashSet::new();
    blocks.retain(|b| seen.insert(*b));
    for block in blocks {
        ui.strong(block);
        for step in [first, current].into_iter().flatten() {
            let list = answer
                .lists
                .iter()
                .find(|l| l.block == block && l.step == step);
            if let Some(list) = list {
                let first = first == Some(step) && first != current;
                strip(ui, list, thumbs, first, &name_of(snaps, step));
            }
            if first == current {
                break;
            }
        }
    }
}

/// Checkboxes: which blocks the inspector lists (none ticked: the map's block).
fn block_choice(ui: &mut Ui, state: &mut MapState) {
    let blocks = state.blocks().to_vec();
    egui::CollapsingHeader::new("blocks to compare")
        .default_open(false)
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for b in blocks {
                    let mut on = state.inspector_blocks.contains(&b);
                    if ui.checkbox(&mut on, b.as_str()).changed() {
                        if on {
                            state.inspector_blocks.insert(b);
                        } else {
                            state.inspector_blocks.remove(&b);
                        }
                    }
                }
            });
        });
}

/// One (block, step)'s neighbours as thumbnails with similarity and label; same-label framed.
fn strip(ui: &mut Ui, list: &NeighbourList, thumbs: Option<&Thumbs>, first: bool, name: &str) {
    let when = if first {
        "first snapshot"
    } else {
        "shown snapshot"
    };
    let found = match &list.list {
        Ok(found) => found,
        Err(e) => {
            ui.label(format!("{when} ({name}): {e}"));
            return;
        }
    };
    let same = found
        .iter()
        .filter(|n| n.label.is_some() && n.label == list.query_label)
        .count();
    ui.label(format!(
        "{when} ({name}): {same}/{} same label",
        found.len()
    ));
    ui.horizontal_wrapped(|ui| {
        for (rank, n) in found.iter().enumerate() {
            let frame = match (n.label, list.query_label) {
                (Some(a), Some(b)) => Some(if a == b { SAME } else { OTHER }),
                _ => None,
            };
            let name = thumbs.map_or_else(|| format!("{:?}", n.label), |t| t.label_name(n.label));
            ui.vertical(|ui| {
                thumbs::show(ui, thumbs, n.index, 48.0, frame);
                ui.small(format!("{}. #{} {:.3}", rank + 1, n.index, n.similarity))
                    .on_hover_text(name);
            });
        }
    });
}

/// The anchor → neighbour pairs the loss used, per head, with nn-accuracy: the newest
/// `nn_examples` event whose pair atlas `pairs` holds decoded (the writer's time budget skips
/// some steps), else the newest event. Tiles come from the pair atlas, then the probe atlas
/// `thumbs`, else a grey "#index" box; a pair atlas that failed to load is named in a notice.
fn loss_pairs(
    ui: &mut Ui,
    model: &RunModel,
    thumbs: Option<&Thumbs>,
    pairs: Option<&(NnExamples, Result<Thumbs, String>)>,
) {
    let newest = model.nn_examples();
    let loaded = pairs
        .and_then(|(ex, t)| Some((ex, t.as_ref().ok()?)))
        .filter(|(ex, _)| newest.is_none_or(|n| ex.step <= n.step));
    let (ex, atlas) = match (loaded, newest) {
        (Some((ex, t)), _) => (ex, Some(t)),
        (None, Some(ex)) => (ex, None),
        (None, None) => {
            ui.label("No NN pairs logged yet (nn_examples).");
            return;
        }
    };
    ui.strong(format!("Pairs the loss used at step {}", ex.step));
    if let Some(n) = newest.filter(|n| n.step > ex.step) {
        let newest = n.step;
        ui.small(format!(
            "newest logged: step {newest}; shown: the newest with images loaded"
        ));
    }
    if let Some((_, Err(e))) = pairs {
        ui.colored_label(OTHER, format!("pair images: {e}"));
    }
    // the pair atlas' tile when it has one, else the probe atlas' (or the placeholder)
    let source = |s: usize| match atlas {
        Some(t) if t.atlas.tile(s).is_some() => Some(t),
        _ => thumbs,
    };
    let steps = model.steps();
    for (head, pairs) in &ex.heads {
        let acc = steps
            .head(head, HeadMetric::NnAccuracy)
            .and_then(|v| v.iter().rev().find(|x| x.is_finite()).copied());
        let acc = acc.map_or("n/a".into(), |a| format!("{:.1}%", 100.0 * a));
        ui.label(format!("{head}: nn-accuracy {acc}"));
        ui.horizontal_wrapped(|ui| {
            for p in pairs {
                let frame = p.same_label.map(|s| if s { SAME } else { OTHER });
                ui.vertical(|ui| {
                    thumbs::show(ui, source(p.sample), p.sample, 40.0, frame);
                    match usize::try_from(p.neighbour) {
                        Ok(n) => thumbs::show(ui, source(n), n, 40.0, frame),
                        Err(_) => ui.small("empty slot"),
                    };
                });
            }
        });
    }
}
