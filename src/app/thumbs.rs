//! Probe thumbnails on screen: the decoded atlas pages uploaded once as textures, and one call
//! that draws a sample's tile (or a grey placeholder with its index when there is none).

use crate::view::atlas::Atlas;
use eframe::egui::{self, Color32, Sense, Ui, Vec2};
use std::sync::Arc;

/// The atlas and its textures (one per page).
pub struct Thumbs {
    pub atlas: Arc<Atlas>,
    textures: Vec<egui::TextureHandle>,
}

impl Thumbs {
    /// Uploads the atlas pages as textures.
    pub fn new(ctx: &egui::Context, atlas: Arc<Atlas>) -> Self {
        let textures = (atlas.pages.iter().enumerate())
            .map(|(i, p)| {
                let size = [p.width as usize, p.height as usize];
                let img = egui::ColorImage::from_rgba_unmultiplied(size, &p.rgba);
                ctx.load_texture(format!("thumbs-{i}"), img, egui::TextureOptions::LINEAR)
            })
            .collect();
        Self { atlas, textures }
    }

    /// The label's name (class name when the dataset has them).
    pub fn label_name(&self, label: Option<u32>) -> String {
        label.map_or_else(|| "unlabelled".into(), |l| self.atlas.class_name(l))
    }
}

/// Draws sample `sample`'s thumbnail `side` px wide, framed in `frame` when given.
pub fn show(
    ui: &mut Ui,
    thumbs: Option<&Thumbs>,
    sample: usize,
    side: f32,
    frame: Option<Color32>,
) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(Vec2::splat(side), Sense::click());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Button, true, format!("sample #{sample}"))
    });
    let tile = thumbs.and_then(|t| Some((t.atlas.tile(sample)?, t)));
    match tile {
        Some((at, t)) if at.page < t.textures.len() => {
            let uv = egui::Rect::from_min_max(
                egui::pos2(at.uv[0], at.uv[1]),
                egui::pos2(at.uv[2], at.uv[3]),
            );
            let image = egui::Image::new((t.textures[at.page].id(), Vec2::splat(side))).uv(uv);
            image.paint_at(ui, rect);
        }
        _ => {
            ui.painter().rect_filled(rect, 2.0, Color32::from_gray(90));
            ui.painter().text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                format!("#{sample}"),
                egui::FontId::proportional(10.0),
                Color32::WHITE,
            );
        }
    }
    if let Some(c) = frame {
        let stroke = egui::Stroke::new(2.0, c);
        ui.painter()
            .rect_stroke(rect, 2.0, stroke, egui::StrokeKind::Inside);
    }
    response
}
