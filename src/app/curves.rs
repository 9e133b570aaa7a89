//! The Curves tab: small multiples, one plot per quantity (per-head step metrics, LR, img/s, and
//! each online-eval metric), one line per head in its block colour, smoothed over the faint raw one.

use super::palette::tap_color;
use super::recon::{self, ReconCache};
use super::runs::OpenRun;
use crate::view::{HeadMetric, MetricKey, RunMetric, RunModel, XAxis, points};
use eframe::egui::{self, Color32, Id, Ui};
use egui_plot::{
    AxisHints, ColorConflictHandling, Legend, Line, LineStyle, Plot, PlotPoint, PlotPoints,
};

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

/// One line of a plot, ready to draw (log10 already applied on a log axis).
struct Series {
    name: String,
    color: Color32,
    style: LineStyle,
    raw: Vec<PlotPoint>,
    smooth: Vec<PlotPoint>,
}

/// The plots' lines, rebuilt only when a shown run receives data or a setting changes (egui
/// repaints on every pointer move; re-smoothing long runs each frame would not keep up).
#[derive(Default)]
pub struct CurveCache {
    key: Option<CacheKey>,
    plots: Vec<(Quantity, Vec<Series>)>,
    /// How often the lines were rebuilt.
    builds: u64,
}

/// What the cached lines were computed from.
#[derive(Clone, Debug, PartialEq)]
struct CacheKey {
    /// (name, model revision) of each shown run.
    runs: Vec<(String, u64)>,
    settings: CurveSettings,
}

impl CurveCache {
    /// The plots for `shown` under `settings`, recomputed only when they changed.
    fn plots(
        &mut self,
        shown: &[&OpenRun],
        settings: &CurveSettings,
    ) -> &[(Quantity, Vec<Series>)] {
        let key = CacheKey {
            runs: shown
                .iter()
                .map(|r| (r.name.clone(), r.model.revision()))
                .collect(),
            settings: settings.clone(),
        };
        if self.key.as_ref() != Some(&key) {
            self.plots = quantities(shown)
                .into_iter()
                .map(|q| {
                    let lines = series(&q, shown, settings);
                    (q, lines)
                })
                .collect();
            self.key = Some(key);
            self.builds += 1;
        }
        &self.plots
    }
}

/// The Curves tab's state kept between frames: the plots' lines and the reconstructions image.
#[derive(Default)]
pub struct CurvesView {
    pub lines: CurveCache,
    pub recon: ReconCache,
}

/// Draws the settings row, the selected run's reconstructions (pre-training runs) and the grid of
/// plots for the shown runs.
pub fn show(
    ui: &mut Ui,
    runs: &[OpenRun],
    selected: Option<&OpenRun>,
    settings: &mut CurveSettings,
    view: &mut CurvesView,
) {
    controls(ui, settings);
    let shown: Vec<&OpenRun> = runs.iter().filter(|r| r.shown).collect();
    let plots = view.lines.plots(&shown, settings);
    let cols = ((ui.available_width() / 380.0).floor() as usize).max(1);
    let width = ui.available_width() / cols as f32 - 8.0;
    egui::ScrollArea::vertical().show(ui, |ui| {
        if let Some(run) = selected {
            recon::section(ui, run, &mut view.recon);
        }
        if plots.is_empty() {
            ui.label("No steps logged yet.");
        }
        for row in plots.chunks(cols) {
            ui.horizontal(|ui| {
                for (q, lines) in row {
                    ui.vertical(|ui| plot(ui, q, lines, settings, width));
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

fn plot(ui: &mut Ui, q: &Quantity, series: &[Series], s: &CurveSettings, width: f32) {
    ui.strong(q.title());
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
    let plot = widen_degenerate(plot, series);
    let mut y = AxisHints::new_y().label_spacing(14.0..=30.0);
    if log_y {
        y = y.formatter(|mark, _| format!("{:.3e}", 10f64.powf(mark.value)));
    }
    plot.custom_y_axes(vec![y]).show(ui, |p| {
        for sr in series {
            // the smoothed line first: the legend takes its colour; the raw one shares its name,
            // so a legend click hides both
            let main = Line::new(&sr.name, PlotPoints::Borrowed(&sr.smooth));
            p.line(main.color(sr.color).width(1.5).style(sr.style));
            if s.smoothing > 0.0 {
                let raw = Line::new(&sr.name, PlotPoints::Borrowed(&sr.raw));
                p.line(raw.color(sr.color.gamma_multiply(0.25)).style(sr.style));
            }
        }
    });
}

/// A run with one logged step has a zero-width x range (and often a tiny y range, e.g. the LR),
/// which egui_plot cannot scale: give such a plot a unit-wide x range and a non-empty y range.
fn widen_degenerate<'a>(plot: Plot<'a>, series: &[Series]) -> Plot<'a> {
    let all = || series.iter().flat_map(|s| s.raw.iter().chain(&s.smooth));
    let span = |f: fn(&PlotPoint) -> f64| {
        let v = all().map(f).filter(|v| v.is_finite());
        v.fold(None, |acc: Option<(f64, f64)>, x| {
            Some(acc.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))))
        })
    };
    let mut plot = plot;
    if let Some((lo, hi)) = span(|p| p.x)
        && hi - lo < 1e-9
    {
        plot = plot.include_x(lo - 0.5).include_x(hi + 0.5);
    }
    if let Some((lo, hi)) = span(|p| p.y)
        && hi - lo < 1e-12 * lo.abs().max(1.0)
    {
        let pad = (lo.abs() * 0.1).max(1e-6);
        plot = plot.include_y(lo - pad).include_y(hi + pad);
    }
    plot
}

/// Plot points, with log10 of the positive values on a log axis (the others cannot be drawn).
fn plot_points(v: Vec<[f64; 2]>, log_y: bool) -> Vec<PlotPoint> {
    v.into_iter()
        .filter(|p| !log_y || p[1] > 0.0)
        .map(|[x, y]| PlotPoint::new(x, if log_y { y.log10() } else { y }))
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
                raw: plot_points(points(t, &y, s.axis, 0.0), s.log_y),
                smooth: plot_points(points(t, &y, s.axis, s.smoothing), s.log_y),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{MemorySource, SourceItem};

    #[test]
    fn one_step_with_a_one_ulp_smoothing_difference_still_plots() {
        // raw and smoothed LR one ulp apart at a single step: egui_plot would give x the
        // (sub-ulp) y height and fail its bounds check
        let lr = 2.5e-5f64;
        let series = [Series {
            name: "lr".into(),
            color: Color32::WHITE,
            style: LineStyle::Solid,
            raw: vec![PlotPoint::new(1.0, lr)],
            smooth: vec![PlotPoint::new(1.0, f64::from_bits(lr.to_bits() + 1))],
        }];
        let ctx = egui::Context::default();
        let settings = CurveSettings::default();
        let mut out = ctx.run_ui(Default::default(), |ui| {
            plot(ui, &Quantity::Run(RunMetric::Lr), &series, &settings, 300.0);
        });
        out.textures_delta.clear();
    }

    fn step(s: u64) -> SourceItem {
        let json = format!(
            r#"{{"type":"pretrain_step","step":{s},"epoch":0,"lr":0.1,"img_per_s":5.0,"loss":{}}}"#,
            1.0 / s as f64
        );
        SourceItem::Event {
            line: s,
            event: serde_json::from_str(&json).unwrap(),
        }
    }

    #[test]
    fn lines_are_cached_until_the_settings_change() {
        let mut source = MemorySource::new("r");
        for s in 1..=3 {
            source.push(step(s));
        }
        let mut run = OpenRun::from_source(Box::new(source), None);
        run.update();
        let (mut cache, mut settings) = (CurveCache::default(), CurveSettings::default());
        let n = |c: &mut CurveCache, s: &CurveSettings| {
            let shown = [&run];
            c.plots(&shown, s)[0].1[0].raw.len()
        };
        assert_eq!(n(&mut cache, &settings), 3);
        n(&mut cache, &settings);
        assert_eq!(cache.builds, 1, "same data and settings: no rebuild");
        settings.log_y = true;
        n(&mut cache, &settings);
        assert_eq!(cache.builds, 2);
        // log y keeps the positive losses, as log10
        let first = cache.plots[0].1[0].raw[0];
        assert!((first.y - 0.0).abs() < 1e-12 && first.x == 1.0, "{first:?}");
    }
}
