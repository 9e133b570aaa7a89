//! The Layers tab: the blocks × eval-steps heat map of one online-eval metric (kNN accuracy by
//! default) of the selected run — which layer improves, and when — with the best block named.

use super::palette::{text_on, viridis};
use crate::view::{HeatMap, MetricKey, RunModel, Tap};
use eframe::egui::{self, Align2, Color32, FontId, Rect, Sense, Ui, pos2, vec2};

/// Width of the row labels and height of the step labels, in points.
const LABEL_W: f32 = 90.0;
const LABEL_H: f32 = 18.0;

/// The metric picker state.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LayerSettings {
    /// `protocol.metric`, e.g. `knn.k10`; None = the smallest kNN k logged.
    pub metric: Option<String>,
}

/// Draws the picker, the heat map and its summary for `model`.
pub fn show(ui: &mut Ui, model: &RunModel, settings: &mut LayerSettings) {
    let metrics: Vec<MetricKey> = model.evals().metrics().into_iter().collect();
    let Some(key) = chosen(&metrics, model, settings) else {
        ui.label("No online evaluation logged yet (the [eval] section of the run's config).");
        return;
    };
    ui.horizontal(|ui| {
        egui::ComboBox::from_label("metric")
            .selected_text(key.to_string())
            .show_ui(ui, |ui| {
                for m in &metrics {
                    let name = m.to_string();
                    let on = name == key.to_string();
                    if ui.selectable_label(on, &name).clicked() {
                        settings.metric = Some(name);
                    }
                }
            });
    });
    let map = model.evals().heat_map(&key);
    ui.label(summary(&map, &key));
    if let Some((lo, hi)) = map.range() {
        ui.label(format!(
            "colour: {lo:.3} (dark) to {hi:.3} (yellow); grey: not evaluated"
        ));
    }
    // the newest evaluations stay in view when the steps outgrow the panel
    egui::ScrollArea::horizontal()
        .stick_to_right(true)
        .show(ui, |ui| draw(ui, &map));
}

/// The chosen metric if logged, else the smallest kNN k, else the first metric.
fn chosen(metrics: &[MetricKey], model: &RunModel, s: &LayerSettings) -> Option<MetricKey> {
    let named = s
        .metric
        .as_ref()
        .and_then(|n| metrics.iter().find(|m| &m.to_string() == n));
    let knn = model.evals().knn_ks().first().map(|&k| MetricKey::knn(k));
    named.cloned().or(knn).or_else(|| metrics.first().cloned())
}

/// A row's label: `block j` or `output` (with the head's name).
pub fn row_label(name: &str, tap: Tap) -> String {
    match tap {
        Tap::Block(j) => format!("block {j} ({name})"),
        Tap::Output => format!("output ({name})"),
    }
}

/// One line naming the best row at the latest evaluated step, and its change since the first.
pub fn summary(map: &HeatMap, key: &MetricKey) -> String {
    let Some(last) = map.steps.len().checked_sub(1) else {
        return format!("{key}: no evaluations yet");
    };
    let best = (0..map.rows.len())
        .filter_map(|r| map.get(r, last).map(|v| (r, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let Some((r, v)) = best else {
        return format!("{key}: no values at step {}", map.steps[last]);
    };
    let (name, tap) = &map.rows[r];
    let change = map
        .get(r, 0)
        .filter(|_| last > 0)
        .map(|v0| format!(", {:+.3} since step {}", v - v0, map.steps[0]))
        .unwrap_or_default();
    format!(
        "best at step {}: {} with {key} {v:.3}{change}",
        map.steps[last],
        row_label(name, *tap)
    )
}

fn draw(ui: &mut Ui, map: &HeatMap) {
    let (rows, cols) = (map.rows.len(), map.steps.len());
    let cell_w = ((ui.available_width() - LABEL_W) / cols.max(1) as f32).clamp(6.0, 80.0);
    let cell_h = 22.0;
    let size = vec2(
        LABEL_W + cell_w * cols as f32,
        cell_h * rows as f32 + LABEL_H,
    );
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    let painter = ui.painter_at(rect);
    let (lo, hi) = map.range().unwrap_or((0.0, 1.0));
    let font = FontId::proportional(11.0);
    let text = ui.visuals().text_color();
    for (r, (name, tap)) in map.rows.iter().enumerate() {
        let y = rect.top() + r as f32 * cell_h;
        let label = row_label(name, *tap);
        painter.text(
            pos2(rect.left() + 2.0, y + cell_h / 2.0),
            Align2::LEFT_CENTER,
            label,
            font.clone(),
            text,
        );
        for c in 0..cols {
            let cell = Rect::from_min_size(
                pos2(rect.left() + LABEL_W + c as f32 * cell_w, y),
                vec2(cell_w, cell_h),
            );
            let (fill, value) = match map.get(r, c) {
                Some(v) => (
                    viridis(if hi > lo { (v - lo) / (hi - lo) } else { 1.0 }),
                    Some(v),
                ),
                None => (Color32::from_gray(90), None),
            };
            painter.rect_filled(cell.shrink(0.5), 0.0, fill);
            if let (Some(v), true) = (value, cell_w >= 34.0) {
                painter.text(
                    cell.center(),
                    Align2::CENTER_CENTER,
                    format!("{v:.2}"),
                    font.clone(),
                    text_on(fill),
                );
            }
        }
    }
    step_labels(&painter, map, rect, cell_w, cell_h, text);
    if let Some(pos) = response.hover_pos() {
        let (c, r) = (
            ((pos.x - rect.left() - LABEL_W) / cell_w).floor(),
            ((pos.y - rect.top()) / cell_h).floor(),
        );
        if c >= 0.0 && r >= 0.0 && (r as usize) < rows && (c as usize) < cols {
            let (r, c) = (r as usize, c as usize);
            let value = map
                .get(r, c)
                .map_or("not evaluated".into(), |v| format!("{v:.4}"));
            let label = row_label(&map.rows[r].0, map.rows[r].1);
            response.on_hover_text(format!("{label}, step {}: {value}", map.steps[c]));
        }
    }
}

/// Step numbers under the columns, thinned so they do not overlap.
fn step_labels(
    p: &egui::Painter,
    map: &HeatMap,
    rect: Rect,
    cell_w: f32,
    cell_h: f32,
    color: Color32,
) {
    let every = (60.0 / cell_w).ceil().max(1.0) as usize;
    let y = rect.top() + cell_h * map.rows.len() as f32 + 2.0;
    for (c, step) in map.steps.iter().enumerate().step_by(every) {
        let x = rect.left() + LABEL_W + (c as f32 + 0.5) * cell_w;
        p.text(
            pos2(x, y),
            Align2::CENTER_TOP,
            step.to_string(),
            FontId::proportional(10.0),
            color,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_best_row_and_its_change() {
        let map = HeatMap {
            rows: vec![("cls3".into(), Tap::Block(3)), ("main".into(), Tap::Output)],
            steps: vec![0, 100],
            cells: vec![Some(0.5), Some(0.7), Some(0.4), Some(0.65)],
        };
        let s = summary(&map, &MetricKey::knn(10));
        assert_eq!(
            s,
            "best at step 100: block 3 (cls3) with knn.k10 0.700, +0.200 since step 0"
        );
        let empty = HeatMap::default();
        assert_eq!(
            summary(&empty, &MetricKey::knn(10)),
            "knn.k10: no evaluations yet"
        );
    }
}
