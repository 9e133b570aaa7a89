//! The Curves tab: small multiples, one plot per quantity (per-head step metrics, LR, img/s, and
//! each online-eval metric), one line per head in its block colour, smoothed over the faint raw one.

use super::palette::tap_color;
use super::runs::OpenRun;
use crate::view::{HeadMetric, MetricKey, RunMetric, RunModel, XAxis, points};
use eframe::egui::{self, Color32, Id, Ui};
use egui_plot::{AxisHints, ColorConflictHandling, Legend, Line, LineStyle, Plot, PlotPoints};

/// How the curves are drawn (kept between launches).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CurveSettings {
    /// Debiased-EMA weight in [0, 0.99]; 0 draws the raw values only.
    pub smoothing: f64,
    pub axis: XAxis,
    pub log_y: bool,
}

impl Default for CurveSettings {
    fn default() -> Self {
        Self {
            smoothing: 0.6,
            axis: XAxis::Step,
            log_y: false,
        }
    }
}

/// One plot's quantity.
#[derive(Clone, Debug, PartialEq)]
enum Quantity {
    Head(HeadMetric),
    Run(RunMetric),
    Eval(MetricKey),
}

impl Quantity {
    fn title(&self) -> String {
        match self {
            Quantity::Head(m) => m.name().to_string(),
            Quantity::Run(m) => m.name().to_string(),
            Quantity::Eval(k) => format!("online eval: {k}"),
        }
    }
}

/// One line of a plot before drawing.
struct Series {
    name: String,
    color: Color32,
    style: LineStyle,
    raw: Vec<[f64; 2]>,
    smooth: Vec<[f64; 2]>,
}

/// Draws the settings row and the grid of plots for the shown runs.
pub fn show(ui: &mut Ui, runs: &[OpenRun], settings: &mut CurveSettings) {
    controls(ui, settings);
    let shown: Vec<&OpenRun> = runs.iter().filter(|r| r.shown).collect();
    let quantities = quantities(&shown);
    if quantities.is_empty() {
        ui.label("No steps logged yet.");
        return;
    }
    let cols = ((ui.available_width() / 380.0).floor() as usize).max(1);
    let width = ui.available_width() / cols as f32 - 8.0;
    egui::ScrollArea::vertical().show(ui, |ui| {
        for row in quantities.chunks(cols) {
            ui.horizontal(|ui| {
                for q in row {
                    ui.vertical(|ui| plot(ui, q, &shown, settings, width));
                }
            });
        }
    });
}

fn controls(ui: &mut Ui, s: &mut CurveSettings) {
    ui.horizontal(|ui| {
        egui::ComboBox::from_label("x axis")
            .selected_text(s.axis.label())
            .show_ui(ui, |ui| {
                for a in XAxis::ALL {
                    ui.selectable_value(&mut s.axis, a, a.label());
                }
            });
        ui.add(egui::Slider::new(&mut s.smoothing, 0.0..=0.99).text("smoothing"));
        ui.checkbox(&mut s.log_y, "log y");
    });
}

/// Every quantity that some shown run has data for, in a fixed order.
fn quantities(runs: &[&OpenRun]) -> Vec<Quantity> {
    let mut out = Vec::new();
    let any_heads = runs
        .iter()
        .any(|r| r.model.steps().heads().next().is_some());
    if any_heads {
        out.extend(HeadMetric::ALL.map(Quantity::Head));
    }
    if runs.iter().any(|r| !r.model.steps().is_empty()) {
        if !any_heads {
            out.push(Quantity::Run(RunMetric::Loss));
        }
        out.extend([RunMetric::Lr, RunMetric::ImgPerS].map(Quantity::Run));
    }
    let mut evals: Vec<MetricKey> = runs
        .iter()
        .flat_map(|r| r.model.evals().metrics())
        .collect();
    evals.sort();
    evals.dedup();
    out.extend(evals.into_iter().map(Quantity::Eval));
    out
}

fn plot(ui: &mut Ui, q: &Quantity, runs: &[&OpenRun], s: &CurveSettings, width: f32) {
    ui.strong(q.title());
    let series = series(q, runs, s);
    let log_y = s.log_y;
    let plot = Plot::new(("curve", q.title()))
        .width(width)
        .height(190.0)
        .legend(Legend::default().color_conflict_handling(ColorConflictHandling::PickFirst))
        .link_cursor(Id::unique("curves-cursor"), [true, false])
        // tick labels down to 30 px apart (the default 60 px leaves a 900-step axis with "0" alone)
        .custom_x_axes(vec![
            AxisHints::new_x()
                .label(s.axis.label())
                .label_spacing(30.0..=60.0),
        ]);
    let mut y = AxisHints::new_y().label_spacing(14.0..=30.0);
    if log_y {
        y = y.formatter(|mark, _| format!("{:.3e}", 10f64.powf(mark.value)));
    }
    plot.custom_y_axes(vec![y]).show(ui, |p| {
        for sr in series {
            let fix = |v: Vec<[f64; 2]>| if log_y { to_log(v) } else { v };
            // the smoothed line first: the legend takes its colour; the raw one shares its name,
            // so a legend click hides both
            let main = Line::new(&sr.name, PlotPoints::from(fix(sr.smooth)));
            p.line(main.color(sr.color).width(1.5).style(sr.style));
            if s.smoothing > 0.0 {
                let raw = Line::new(&sr.name, PlotPoints::from(fix(sr.raw)));
                p.line(raw.color(sr.color.gamma_multiply(0.25)).style(sr.style));
            }
        }
    });
}

/// log10 of the positive values (the others cannot be drawn on a log axis).
fn to_log(v: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    v.into_iter()
        .filter(|p| p[1] > 0.0)
        .map(|[x, y]| [x, y.log10()])
        .collect()
}

/// The lines of quantity `q`: per run (the first solid, overlaid ones dashed) and per head.
fn series(q: &Quantity, runs: &[&OpenRun], s: &CurveSettings) -> Vec<Series> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let style = if i == 0 {
            LineStyle::Solid
        } else {
            LineStyle::dashed_loose()
        };
        let prefix = if runs.len() > 1 {
            format!("{} · ", run.name)
        } else {
            String::new()
        };
        for (label, tap, t, y) in columns(q, &run.model) {
            out.push(Series {
                name: format!("{prefix}{label}"),
                color: tap_color(tap),
                style,
                raw: points(t, &y, s.axis, 0.0),
                smooth: points(t, &y, s.axis, s.smoothing),
            });
        }
    }
    out
}

type Column<'a> = (
    String,
    Option<crate::view::Tap>,
    &'a crate::view::Timeline,
    Vec<f64>,
);

/// The y columns of `q` in one run, with their label, tap and timeline.
fn columns<'a>(q: &Quantity, m: &'a RunModel) -> Vec<Column<'a>> {
    let steps = m.steps();
    match q {
        Quantity::Head(metric) => steps
            .heads()
            .filter_map(|h| {
                let y = steps.head(h, *metric)?.to_vec();
                Some((h.to_string(), m.tap(h), steps.timeline(), y))
            })
            .collect(),
        Quantity::Run(metric) => {
            vec![(
                metric.name().to_string(),
                None,
                steps.timeline(),
                steps.run(*metric).to_vec(),
            )]
        }
        Quantity::Eval(key) => {
            let evals = m.evals();
            evals
                .heads()
                .into_iter()
                .map(|(h, tap)| {
                    let y = evals.values(&h, key);
                    (h, Some(tap), evals.timeline(), y)
                })
                .collect()
        }
    }
}
