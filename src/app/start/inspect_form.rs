//! The "Inspect checkpoints" form: one checkpoint (or two, compared) over an image folder; the
//! job (`app::jobs`) writes a run-like directory that the app then opens like a run.

use super::browse::Pick;
use super::{Target, error_label};
use crate::device::DeviceChoice;
use crate::inspect::{DEFAULT_LIMIT, InspectSpec};
use eframe::egui::{self, Ui};
use std::path::PathBuf;

/// The form's fields: (label, picker).
const FIELDS: [(&str, Pick); 4] = [
    ("Checkpoint", Pick::File),
    ("Second checkpoint (optional, to compare)", Pick::File),
    ("Image folder", Pick::Folder),
    ("Output folder (optional; default: the cache)", Pick::Folder),
];

/// The form's state.
pub struct InspectForm {
    values: [String; 4],
    limit: String,
    device: DeviceChoice,
    /// Why the last Start did not start.
    pub start_error: Option<String>,
}

impl Default for InspectForm {
    fn default() -> Self {
        Self {
            values: Default::default(),
            limit: DEFAULT_LIMIT.to_string(),
            device: DeviceChoice::Auto,
            start_error: None,
        }
    }
}

impl InspectForm {
    /// The request the fields describe, or what is missing.
    pub fn request(&self) -> Result<InspectSpec, String> {
        let [a, b, images, out] = self.values.each_ref().map(|v| v.trim());
        if a.is_empty() {
            return Err("give a checkpoint".into());
        }
        if images.is_empty() {
            return Err("give an image folder".into());
        }
        let limit = match self.limit.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "limit = {:?} must be a whole number >= 1",
                    self.limit
                ));
            }
        };
        let mut checkpoints = vec![PathBuf::from(a)];
        checkpoints.extend((!b.is_empty()).then(|| PathBuf::from(b)));
        let mut spec = InspectSpec::new(checkpoints, PathBuf::from(images));
        (spec.limit, spec.device) = (limit, self.device);
        spec.out = (!out.is_empty()).then(|| PathBuf::from(out));
        Ok(spec)
    }

    /// The form; the request when Start was pressed.
    pub fn show(
        &mut self,
        ui: &mut Ui,
        browse: &mut Option<(Target, Pick)>,
        job: Option<&crate::app::jobs::InspectJob>,
    ) -> Option<InspectSpec> {
        ui.heading("Inspect checkpoints");
        ui.label(
            "Embeds the images with each checkpoint at every block; the result opens like a run.",
        );
        egui::Grid::new("inspect-fields")
            .num_columns(2)
            .show(ui, |ui| {
                for (i, ((key, pick), value)) in FIELDS.iter().zip(&mut self.values).enumerate() {
                    let label = ui.label(*key);
                    ui.horizontal(|ui| {
                        let edit = egui::TextEdit::singleline(value).desired_width(420.0);
                        ui.add(edit).labelled_by(label.id);
                        if ui.button("Browse...").clicked() {
                            *browse = Some((Target::Inspect(i), *pick));
                        }
                    });
                    ui.end_row();
                }
                let label = ui.label("Images (at most)");
                ui.add(egui::TextEdit::singleline(&mut self.limit).desired_width(100.0))
                    .labelled_by(label.id);
                ui.end_row();
            });
        super::refine_form::device_combo(ui, "device", &mut self.device);
        let request = self.request();
        if let Err(e) = &request {
            error_label(ui, e);
        }
        if let Some(e) = &self.start_error {
            error_label(ui, e);
        }
        let busy = job.is_some_and(|j| j.state().active());
        if let Some(j) = job {
            j.show(ui);
        }
        let start = ui.add_enabled(
            request.is_ok() && !busy,
            egui::Button::new("Start inspection"),
        );
        request.ok().filter(|_| start.clicked())
    }

    /// The job started: the last error is stale.
    pub fn started(&mut self) {
        self.start_error = None;
    }

    /// The text of field `i`.
    pub fn field(&self, i: usize) -> String {
        self.values.get(i).cloned().unwrap_or_default()
    }

    /// Puts a picked path into field `i`.
    pub fn set_field(&mut self, i: usize, path: String) {
        if let Some(v) = self.values.get_mut(i) {
            *v = path;
        }
    }
}
