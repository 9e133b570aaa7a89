//! A small file and folder picker for the start screen's path fields: a window listing one
//! folder, read on a background thread (the UI never waits for the file system).

use eframe::egui::{self, Ui};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// What the picker may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    File,
    Folder,
}

/// One folder's entries, sorted: folders first, then files, by name.
struct Listing {
    dir: PathBuf,
    entries: Vec<(String, bool)>,
}

/// The state of the folder being read.
enum Read {
    Pending(Receiver<Result<Listing, String>>),
    Done(Listing),
    Failed(String),
}

/// The picker window (open while this value exists).
pub struct Browser {
    pick: Pick,
    read: Read,
}

/// What the user did in the picker this frame.
pub enum Choice {
    Chosen(PathBuf),
    Cancelled,
}

impl Browser {
    /// Opens at `start` (a folder, or a file whose folder is listed; empty: the working folder).
    pub fn new(pick: Pick, start: &str, ctx: &egui::Context) -> Self {
        let start = match start.trim() {
            "" => PathBuf::from("."),
            s => PathBuf::from(s),
        };
        Self {
            pick,
            read: read(start, ctx.clone()),
        }
    }

    /// Shows the window; a choice once the user made one.
    pub fn show(&mut self, ui: &Ui) -> Option<Choice> {
        let title = match self.pick {
            Pick::File => "Choose a file",
            Pick::Folder => "Choose a folder",
        };
        let mut choice = None;
        egui::Window::new(title)
            .collapsible(false)
            .default_size([480.0, 420.0])
            .show(ui.ctx(), |ui| choice = self.contents(ui));
        choice
    }

    fn contents(&mut self, ui: &mut Ui) -> Option<Choice> {
        if let Read::Pending(rx) = &self.read {
            match rx.try_recv() {
                Ok(Ok(l)) => self.read = Read::Done(l),
                Ok(Err(e)) => self.read = Read::Failed(e),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.read = Read::Failed("the folder listing thread ended".into())
                }
            }
        }
        let mut choice = None;
        let mut go = None;
        match &self.read {
            Read::Pending(_) => {
                ui.label("reading the folder...");
            }
            Read::Failed(e) => {
                ui.colored_label(egui::Color32::from_rgb(213, 94, 0), e);
            }
            Read::Done(l) => (go, choice) = self.listing(ui, l),
        }
        if ui.button("Cancel").clicked() {
            choice = Some(Choice::Cancelled);
        }
        if let Some(dir) = go {
            self.read = read(dir, ui.ctx().clone());
        }
        choice
    }

    /// The folder's entries; (a folder to go to, a choice).
    fn listing(&self, ui: &mut Ui, l: &Listing) -> (Option<PathBuf>, Option<Choice>) {
        let (mut go, mut choice) = (None, None);
        ui.label(format!("in {}", l.dir.display()));
        ui.horizontal(|ui| {
            if let Some(up) = l.dir.parent().filter(|_| ui.button("Up").clicked()) {
                go = Some(up.to_path_buf());
            }
            if self.pick == Pick::Folder && ui.button("Use this folder").clicked() {
                choice = Some(Choice::Chosen(l.dir.clone()));
            }
        });
        ui.separator();
        egui::ScrollArea::vertical()
            .max_height(300.0)
            .show(ui, |ui| {
                for (name, is_dir) in &l.entries {
                    if *is_dir && ui.selectable_label(false, format!("{name}/")).clicked() {
                        go = Some(l.dir.join(name));
                    }
                    let file = !*is_dir && self.pick == Pick::File;
                    if file && ui.selectable_label(false, name).clicked() {
                        choice = Some(Choice::Chosen(l.dir.join(name)));
                    }
                }
            });
        (go, choice)
    }
}

/// Lists `start` (or its folder, when it is not one) on a new thread.
fn read(start: PathBuf, ctx: egui::Context) -> Read {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("mimr-app-browse".into())
        .spawn(move || {
            let _ = tx.send(list(&start));
            ctx.request_repaint();
        });
    match spawned {
        Ok(_) => Read::Pending(rx),
        Err(e) => Read::Failed(format!("cannot start a thread: {e}")),
    }
}

/// The entries of `start`'s folder (absolute), hidden ones left out.
fn list(start: &Path) -> Result<Listing, String> {
    let start = std::path::absolute(start).map_err(|e| e.to_string())?;
    let dir = match start.is_dir() {
        true => start,
        false => start.parent().map(Path::to_path_buf).unwrap_or(start),
    };
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries: Vec<(String, bool)> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().is_dir(),
            )
        })
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Listing { dir, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_puts_folders_first_and_a_file_lists_its_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("b")).unwrap();
        std::fs::write(d.path().join("a.toml"), "").unwrap();
        std::fs::write(d.path().join(".hidden"), "").unwrap();
        let l = list(&d.path().join("a.toml")).unwrap();
        assert_eq!(l.dir, d.path());
        assert_eq!(
            l.entries,
            vec![("b".into(), true), ("a.toml".into(), false)]
        );
        assert!(list(&d.path().join("missing/x")).is_err());
    }
}
