//! The "New refinement" form: a config file, the settings most often changed, and free
//! overrides, turned into the `--set` list of `mimr refine` and validated by the CLI's own loader.

use super::browse::Pick;
use super::{Target, background, error_label, path_row};
use crate::device::DeviceChoice;
use crate::refine::config::RefineConfig;
use eframe::egui::{self, Ui};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};

/// The example config the form starts from when the app runs in the repository.
pub const DEFAULT_CONFIG: &str = "configs/cpu_fashion_mnist.toml";

/// How a field's text becomes a `--set` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A TOML string (quoted and escaped here).
    Path(Pick),
    /// Written as typed (numbers: TOML parses them; anything else is the loader's error).
    Raw,
    /// A comma list, written as a TOML array.
    List,
}

/// The editable settings: (config key, kind).
const FIELDS: [(&str, Kind); 8] = [
    ("model.checkpoint", Kind::Path(Pick::File)),
    ("data.train", Kind::Path(Pick::Folder)),
    ("heads.blocks", Kind::List),
    ("stage2.epochs", Kind::Raw),
    ("stage3.epochs", Kind::Raw),
    ("data.batch_size", Kind::Raw),
    ("run.ema_momentum", Kind::Raw),
    ("run.dir", Kind::Path(Pick::Folder)),
];

/// The fields' text for a loaded config (paths absolute: the loader resolved them already).
fn prefill(cfg: &RefineConfig) -> [String; 8] {
    let path = |p: &PathBuf| {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        abs.display().to_string()
    };
    let blocks: Vec<String> = cfg.heads.blocks.iter().map(|b| b.to_string()).collect();
    [
        path(&cfg.model.checkpoint),
        path(&cfg.data.train),
        blocks.join(", "),
        cfg.stage2.epochs.to_string(),
        cfg.stage3.epochs.to_string(),
        cfg.data.batch_size.to_string(),
        cfg.run.ema_momentum.to_string(),
        path(&cfg.run.dir),
    ]
}

/// `key=value` for a field's text, as `--set` takes it.
fn set_for(key: &str, kind: Kind, text: &str) -> String {
    let value = match kind {
        Kind::Path(_) => toml::Value::String(text.trim().to_string()).to_string(),
        Kind::Raw => text.trim().to_string(),
        Kind::List => {
            let items: Vec<&str> = text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            format!("[{}]", items.join(", "))
        }
    };
    format!("{key}={value}")
}

fn device_name(d: DeviceChoice) -> &'static str {
    match d {
        DeviceChoice::Auto => "auto",
        DeviceChoice::Wgpu => "wgpu",
        DeviceChoice::Cpu => "cpu",
    }
}

/// The validation of one (config path, overrides) pair.
type Checked = ((String, Vec<String>), Result<RefineConfig, String>);

/// The wgpu adapters, listed once on a background thread.
enum Adapters {
    NotAsked,
    Listing(Receiver<Vec<String>>),
    Listed(Vec<String>),
}

/// The form's state.
pub struct RefineForm {
    pub config_path: String,
    /// The loaded config's field values and device: a field that differs becomes a `--set`.
    base: Option<([String; 8], DeviceChoice)>,
    values: [String; 8],
    device: DeviceChoice,
    /// Overrides, `key=value` per line.
    extra: String,
    loading: Option<Receiver<Result<RefineConfig, String>>>,
    load_error: Option<String>,
    checking: Option<Receiver<Checked>>,
    checked: Option<Checked>,
    /// Why the last Start did not start.
    pub start_error: Option<String>,
    adapters: Adapters,
    started: bool,
}

impl Default for RefineForm {
    fn default() -> Self {
        Self {
            config_path: String::new(),
            base: None,
            values: Default::default(),
            device: DeviceChoice::Auto,
            extra: String::new(),
            loading: None,
            load_error: None,
            checking: None,
            checked: None,
            start_error: None,
            adapters: Adapters::NotAsked,
            started: false,
        }
    }
}

impl RefineForm {
    /// On the first showing: the example config when it is there, and the adapter listing.
    fn first_show(&mut self, ctx: &egui::Context) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        if std::path::Path::new(DEFAULT_CONFIG).is_file() {
            self.config_path = DEFAULT_CONFIG.into();
            self.load(ctx);
        }
        self.adapters = match background(ctx, adapter_names) {
            Ok(rx) => Adapters::Listing(rx),
            Err(e) => Adapters::Listed(vec![e]),
        };
    }

    /// The `--set` list: every field that differs from the loaded config, the device, then the
    /// extra lines.
    pub fn sets(&self) -> Vec<String> {
        let Some((base, base_device)) = &self.base else {
            return Vec::new();
        };
        let mut sets: Vec<String> = FIELDS
            .iter()
            .zip(self.values.iter().zip(base))
            .filter(|(_, (v, b))| v.trim() != b.trim())
            .map(|((key, kind), (v, _))| set_for(key, *kind, v))
            .collect();
        if self.device != *base_device {
            sets.push(format!("run.device=\"{}\"", device_name(self.device)));
        }
        let extra = self.extra.lines().map(str::trim).filter(|l| !l.is_empty());
        sets.extend(extra.map(String::from));
        sets
    }

    /// The same run as a command line.
    pub fn command_line(&self) -> String {
        let mut cmd = format!("mimr refine --config {}", self.config_path.trim());
        for s in self.sets() {
            cmd.push_str(&format!(" --set '{s}'"));
        }
        cmd
    }

    /// Reads the config file on a background thread; the fields are filled when it arrives.
    fn load(&mut self, ctx: &egui::Context) {
        let path = PathBuf::from(self.config_path.trim());
        let job = background(ctx, move || {
            RefineConfig::load(&path, &[]).map_err(|e| format!("{e:#}"))
        });
        match job {
            Ok(rx) => self.loading = Some(rx),
            Err(e) => self.load_error = Some(e),
        }
    }

    /// Takes what the background threads sent; starts a validation when the inputs changed.
    fn poll(&mut self, ctx: &egui::Context) {
        if let Some(got) = take(&mut self.loading) {
            match got.and_then(|r| r) {
                Ok(cfg) => {
                    let base = prefill(&cfg);
                    (self.values, self.device) = (base.clone(), cfg.run.device);
                    (self.base, self.load_error) = (Some((base, cfg.run.device)), None);
                    // the file may have changed since the last check of the same inputs
                    self.checked = None;
                }
                Err(e) => self.load_error = Some(e),
            }
        }
        if let Adapters::Listing(rx) = &self.adapters
            && let Ok(list) = rx.try_recv()
        {
            self.adapters = Adapters::Listed(list);
        }
        if let Some(got) = take(&mut self.checking) {
            let key = (self.config_path.trim().to_string(), self.sets());
            self.checked = Some(got.unwrap_or_else(|e| (key, Err(e))));
        }
        self.validate(ctx);
    }

    /// Runs `RefineConfig::load(config, sets)` (what `mimr refine` runs first) off the UI thread.
    fn validate(&mut self, ctx: &egui::Context) {
        if self.base.is_none() || self.checking.is_some() {
            return;
        }
        let key = (self.config_path.trim().to_string(), self.sets());
        if self.checked.as_ref().is_some_and(|c| c.0 == key) {
            return;
        }
        let job = background(ctx, move || {
            let got = RefineConfig::load(std::path::Path::new(&key.0), &key.1);
            (key, got.map_err(|e| format!("{e:#}")))
        });
        match job {
            Ok(rx) => self.checking = Some(rx),
            Err(e) => self.load_error = Some(e),
        }
    }

    /// The validated config of the inputs as they are now (None: invalid or being checked).
    fn valid(&self) -> Option<&RefineConfig> {
        let (key, got) = self.checked.as_ref()?;
        got.as_ref().ok().filter(|_| self.is_current(key))
    }

    /// True when `key` is the inputs as they are now and no newer check is under way.
    fn is_current(&self, key: &(String, Vec<String>)) -> bool {
        self.checking.is_none() && key.0 == self.config_path.trim() && key.1 == self.sets()
    }
}

/// Takes a background result once it is there (an error when its thread ended without one).
pub(super) fn take<T>(slot: &mut Option<Receiver<T>>) -> Option<Result<T, String>> {
    let got = match slot.as_ref()?.try_recv() {
        Ok(v) => Ok(v),
        Err(TryRecvError::Empty) => return None,
        Err(TryRecvError::Disconnected) => {
            Err("the background thread ended without an answer".into())
        }
    };
    *slot = None;
    Some(got)
}

/// The wgpu adapters as "name (backend, kind)".
fn adapter_names() -> Vec<String> {
    let list = crate::device::adapters();
    list.iter()
        .map(|a| format!("{} ({:?}, {:?})", a.name, a.backend, a.kind))
        .collect()
}

impl RefineForm {
    /// The form; the validated config when Start was pressed.
    pub fn show(
        &mut self,
        ui: &mut Ui,
        browse: &mut Option<(Target, Pick)>,
    ) -> Option<RefineConfig> {
        self.first_show(ui.ctx());
        self.poll(ui.ctx());
        ui.heading("New refinement");
        ui.label("Settings come from the config file; a changed field becomes a --set override, exactly as on the command line.");
        ui.horizontal(|ui| {
            if path_row(ui, "Config file", &mut self.config_path) {
                *browse = Some((Target::Config, Pick::File));
            }
            if ui.button("Load").clicked() && !self.config_path.trim().is_empty() {
                self.load(ui.ctx());
            }
        });
        if self.loading.is_some() {
            ui.label("reading the config...");
        }
        if let Some(e) = &self.load_error {
            error_label(ui, e);
        }
        if self.base.is_none() {
            ui.label("Load a config file (e.g. configs/cpu_fashion_mnist.toml) to fill the form.");
            return None;
        }
        self.fields(ui, browse);
        self.device_row(ui);
        let label = ui.label("Extra overrides (key=value per line, e.g. data.limit=2000)");
        ui.add(egui::TextEdit::multiline(&mut self.extra).desired_rows(3))
            .labelled_by(label.id);
        ui.label("Relative paths are read from the config file's folder, as with --set.");
        ui.add(egui::Label::new(egui::RichText::new(self.command_line()).monospace()).wrap());
        self.verdict(ui)
    }

    fn fields(&mut self, ui: &mut Ui, browse: &mut Option<(Target, Pick)>) {
        egui::Grid::new("refine-fields")
            .num_columns(2)
            .show(ui, |ui| {
                for (i, ((key, kind), value)) in FIELDS.iter().zip(&mut self.values).enumerate() {
                    let label = ui.label(*key);
                    ui.horizontal(|ui| {
                        let edit = egui::TextEdit::singleline(value).desired_width(420.0);
                        ui.add(edit).labelled_by(label.id);
                        if let Kind::Path(pick) = kind
                            && ui.button("Browse...").clicked()
                        {
                            *browse = Some((Target::Refine(i), *pick));
                        }
                    });
                    ui.end_row();
                }
            });
    }

    fn device_row(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            device_combo(ui, "run.device", &mut self.device);
            let text = match &self.adapters {
                Adapters::NotAsked | Adapters::Listing(_) => "adapters: listing...".into(),
                Adapters::Listed(l) if l.is_empty() => "adapters: none found (cpu only)".into(),
                Adapters::Listed(l) => format!("adapters: {}", l.join("; ")),
            };
            ui.label(text);
        });
    }

    /// The validation's outcome and the Start button (enabled only for a valid config).
    fn verdict(&mut self, ui: &mut Ui) -> Option<RefineConfig> {
        let valid = self.valid().cloned();
        match (&valid, &self.checked) {
            (Some(_), _) => {
                ui.label("valid: the config mimr refine would run");
            }
            (None, Some((key, Err(e)))) if self.is_current(key) => {
                error_label(ui, e);
            }
            _ => {
                ui.label("checking...");
            }
        }
        if let Some(e) = &self.start_error {
            error_label(ui, e);
        }
        let start = ui.add_enabled(valid.is_some(), egui::Button::new("Start refinement"));
        valid.filter(|_| start.clicked())
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

/// A labelled choice of `--device`.
pub fn device_combo(ui: &mut Ui, label: &str, device: &mut DeviceChoice) {
    egui::ComboBox::from_label(label)
        .selected_text(device_name(*device))
        .show_ui(ui, |ui| {
            for d in [DeviceChoice::Auto, DeviceChoice::Wgpu, DeviceChoice::Cpu] {
                ui.selectable_value(device, d, device_name(d));
            }
        });
}
