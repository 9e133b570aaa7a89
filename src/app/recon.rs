//! The MAE reconstructions of a pre-training run in the Curves tab: the newest `reconstructions`
//! event's PNG (per column the image, its visible patches, the reconstruction), read and decoded
//! on a short-lived thread once per (run, step) and kept as a texture.

use super::runs::OpenRun;
use crate::runlog::Reconstructions;
use crate::view::files::RunFiles;
use eframe::egui::{self, Ui};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

/// Which run and step the cached image belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    run: String,
    step: u64,
}

/// Where the shown image stands.
enum Load {
    /// Read and decoded on a thread; the answer arrives here.
    Pending(Receiver<Result<egui::ColorImage, String>>),
    Ready(egui::TextureHandle),
    Failed(String),
}

/// The one reconstructions texture the tab shows, keyed by run + step.
#[derive(Default)]
pub struct ReconCache {
    shown: Option<(Key, Load)>,
    /// How many loads were started (a test checks that frames do not reload).
    loads: u64,
}

impl ReconCache {
    /// How many times an image was read and decoded.
    pub fn loads(&self) -> u64 {
        self.loads
    }

    /// The load state for `key`, starting a load when the key changed.
    fn state(&mut self, ctx: &egui::Context, key: Key, run: &OpenRun, ev: &Reconstructions) {
        if self.shown.as_ref().is_some_and(|(k, _)| *k == key) {
            return;
        }
        let load = match &run.files {
            Some(files) => spawn_load(ctx, files.clone(), ev.image.clone()),
            None => Load::Failed("this run's files cannot be read here".into()),
        };
        self.loads += 1;
        self.shown = Some((key, load));
    }

    /// Takes the thread's answer when it has arrived (uploading the texture once).
    fn poll(&mut self, ctx: &egui::Context) {
        let Some((key, load)) = &mut self.shown else {
            return;
        };
        let Load::Pending(rx) = load else {
            return;
        };
        *load = match rx.try_recv() {
            Ok(Ok(img)) => Load::Ready(ctx.load_texture(
                format!("reconstructions-{}-{}", key.run, key.step),
                img,
                egui::TextureOptions::LINEAR,
            )),
            Ok(Err(e)) => Load::Failed(e),
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Load::Failed("the image loader stopped".into()),
        };
    }
}

/// Reads and decodes `rel` on its own thread; a repaint is asked for when it is done.
fn spawn_load(ctx: &egui::Context, files: Arc<dyn RunFiles>, rel: String) -> Load {
    let (tx, rx) = channel();
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("mimr-recon".into())
        .spawn(move || {
            let _ = tx.send(read_image(files.as_ref(), &rel));
            ctx.request_repaint();
        });
    match spawned {
        Ok(_) => Load::Pending(rx),
        Err(e) => Load::Failed(format!("cannot start the image loader: {e}")),
    }
}

/// The run file `rel` decoded as an RGBA image.
fn read_image(files: &dyn RunFiles, rel: &str) -> Result<egui::ColorImage, String> {
    let bytes = files.read(rel)?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| format!("{rel}: not a readable image ({e})"))?
        .to_rgba8();
    let size = [img.width() as usize, img.height() as usize];
    Ok(egui::ColorImage::from_rgba_unmultiplied(size, img.as_raw()))
}

/// A name for `run` that tells runs apart (its directory when it has one).
fn run_key(run: &OpenRun) -> String {
    run.dir
        .as_ref()
        .map_or_else(|| run.name.clone(), |d| d.display().to_string())
}

/// The collapsible "Reconstructions (step N)" section for `run`, when its log has any.
pub fn section(ui: &mut Ui, run: &OpenRun, cache: &mut ReconCache) {
    let Some(ev) = run.model.reconstructions() else {
        return;
    };
    egui::CollapsingHeader::new(format!("Reconstructions (step {})", ev.step))
        .id_salt("reconstructions")
        .default_open(false)
        .show(ui, |ui| body(ui, run, ev, cache));
}

/// The caption and the image (or why there is none).
fn body(ui: &mut Ui, run: &OpenRun, ev: &Reconstructions, cache: &mut ReconCache) {
    let key = Key {
        run: run_key(run),
        step: ev.step,
    };
    cache.state(ui.ctx(), key, run, ev);
    cache.poll(ui.ctx());
    ui.label(caption(ev.mask_ratio));
    match cache.shown.as_ref().map(|(_, l)| l) {
        Some(Load::Ready(tex)) => image(ui, tex, ev.step),
        Some(Load::Failed(e)) => {
            ui.label(format!("Cannot show the reconstructions: {e}"));
        }
        Some(Load::Pending(_)) | None => {
            ui.label("loading the reconstructions...");
        }
    }
}

/// "rows: image, visible patches (75 % masked), reconstruction".
fn caption(mask_ratio: f64) -> String {
    let pct = (mask_ratio * 100.0).round();
    format!("rows: image, visible patches ({pct:.0} % masked), reconstruction")
}

/// The texture at 1:1, or scaled down to the available width.
fn image(ui: &mut Ui, tex: &egui::TextureHandle, step: u64) {
    let [w, h] = tex.size();
    let size = egui::vec2(w as f32, h as f32);
    let fit = (ui.available_width() / size.x).clamp(0.0, 1.0);
    let sized = egui::load::SizedTexture::new(tex.id(), size * fit);
    let alt = format!("reconstructions at step {step} ({w}x{h} px)");
    ui.add(egui::Image::from_texture(sized).alt_text(alt));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caption_names_the_mask_ratio_in_percent() {
        let want = "rows: image, visible patches (75 % masked), reconstruction";
        assert_eq!(caption(0.75), want);
        assert!(caption(0.6).contains("(60 % masked)"));
    }
}
