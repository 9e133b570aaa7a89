//! The probe subset's thumbnails (`thumbnails.png` + `thumbnails.json`), decoded and repacked into
//! square pages no larger than a GPU texture every backend accepts (WebGL2's 2048 px).

use crate::runlog::{ThumbnailEntry, ThumbnailIndex};
use std::collections::HashMap;

/// The largest texture side used for a page.
pub const PAGE_SIDE: u32 = 2048;

/// One page of tiles, RGBA8 row-major.
pub struct Page {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// Where a sample's tile lies: its page and its rectangle there in 0..1 texture coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileAt {
    pub page: usize,
    /// min x, min y, max x, max y.
    pub uv: [f32; 4],
}

/// Decoded thumbnails by dataset sample.
pub struct Atlas {
    pub index: ThumbnailIndex,
    pub pages: Vec<Page>,
    /// Tile number (position in `index.samples`) of each dataset sample.
    tiles: HashMap<usize, usize>,
    per_page_side: u32,
    /// Tiles the image holds (index entries beyond have none).
    held: usize,
}

impl std::fmt::Debug for Atlas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Atlas({} tiles, {} pages)",
            self.index.samples.len(),
            self.pages.len()
        )
    }
}

impl Atlas {
    /// Decodes the atlas PNG and its index; names the files in errors.
    pub fn decode(png: &[u8], index_json: &[u8]) -> Result<Self, String> {
        let index: ThumbnailIndex = serde_json::from_slice(index_json)
            .map_err(|e| format!("thumbnail index: not valid ({e})"))?;
        if index.tile == 0 || index.columns == 0 || index.tile > 1024 {
            return Err(format!(
                "thumbnail index: tile {} px in {} columns is not a valid layout",
                index.tile, index.columns
            ));
        }
        let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .map_err(|e| format!("thumbnail atlas: not a readable PNG ({e})"))?
            .to_rgba8();
        let per_page_side = (PAGE_SIDE / index.tile).max(1);
        // only tiles the image really holds get pages: memory follows the PNG, not the index
        let held = (img.width() / index.tile).min(index.columns) as usize
            * img.height().div_ceil(index.tile) as usize;
        let held = index.samples.len().min(held);
        let pages = repack(&img, &index, held, per_page_side);
        let tiles = (index.samples.iter().enumerate())
            .map(|(t, e)| (e.sample, t))
            .collect();
        Ok(Self {
            index,
            pages,
            tiles,
            per_page_side,
            held,
        })
    }

    /// The tile of dataset sample `sample`, when the atlas holds a readable one.
    pub fn tile(&self, sample: usize) -> Option<TileAt> {
        let &t = self.tiles.get(&sample)?;
        if t >= self.held || !self.index.samples.get(t).is_some_and(|e| e.readable) {
            return None;
        }
        let per_page = (self.per_page_side * self.per_page_side) as usize;
        let (page, slot) = (t / per_page, (t % per_page) as u32);
        let p = self.pages.get(page)?;
        let (x, y) = (slot % self.per_page_side, slot / self.per_page_side);
        let tile = self.index.tile as f32;
        let (w, h) = (p.width as f32, p.height as f32);
        let (x0, y0) = (x as f32 * tile, y as f32 * tile);
        Some(TileAt {
            page,
            uv: [x0 / w, y0 / h, (x0 + tile) / w, (y0 + tile) / h],
        })
    }

    /// The index entry of dataset sample `sample`.
    pub fn entry(&self, sample: usize) -> Option<&ThumbnailEntry> {
        self.index.samples.get(*self.tiles.get(&sample)?)
    }

    /// The class name of `label`, or the number when the dataset has no names.
    pub fn class_name(&self, label: u32) -> String {
        (self.index.classes.get(label as usize)).map_or_else(|| label.to_string(), Clone::clone)
    }
}

/// Copies tiles `0..n` of the source atlas (row-major in `index.columns`) to slot
/// `t % per_page²` of page `t / per_page²`; parts outside the source image stay transparent.
fn repack(
    img: &image::RgbaImage,
    index: &ThumbnailIndex,
    n: usize,
    per_page_side: u32,
) -> Vec<Page> {
    let n = n as u32;
    let per_page = per_page_side * per_page_side;
    let tile = index.tile;
    let mut pages = Vec::new();
    for first in (0..n).step_by(per_page as usize) {
        let count = (n - first).min(per_page);
        let cols = count.min(per_page_side);
        let rows = count.div_ceil(per_page_side);
        let (width, height) = (cols * tile, rows * tile);
        let mut rgba = vec![0u8; (width * height * 4) as usize];
        for slot in 0..count {
            let t = first + slot;
            let (sx, sy) = ((t % index.columns) * tile, (t / index.columns) * tile);
            let (dx, dy) = ((slot % per_page_side) * tile, (slot / per_page_side) * tile);
            copy_tile(img, (sx, sy), &mut rgba, width, (dx, dy), tile);
        }
        pages.push(Page {
            width,
            height,
            rgba,
        });
    }
    pages
}

fn copy_tile(
    img: &image::RgbaImage,
    (sx, sy): (u32, u32),
    dst: &mut [u8],
    dst_width: u32,
    (dx, dy): (u32, u32),
    tile: u32,
) {
    for row in 0..tile {
        for col in 0..tile {
            let Some(px) = img.get_pixel_checked(sx + col, sy + row) else {
                continue;
            };
            let at = (((dy + row) * dst_width + dx + col) * 4) as usize;
            if let Some(d) = dst.get_mut(at..at + 4) {
                d.copy_from_slice(&px.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runlog::ThumbnailEntry;

    /// An atlas of `n` tiles of side `tile` in `columns` columns, tile i filled with colour i.
    fn atlas(n: u32, tile: u32, columns: u32) -> (Vec<u8>, Vec<u8>) {
        let rows = n.div_ceil(columns);
        let mut img = image::RgbImage::new(columns * tile, rows * tile);
        for i in 0..n {
            let (x0, y0) = ((i % columns) * tile, (i / columns) * tile);
            for y in 0..tile {
                for x in 0..tile {
                    img.put_pixel(x0 + x, y0 + y, image::Rgb([i as u8, 7, 200]));
                }
            }
        }
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let index = ThumbnailIndex {
            tile,
            columns,
            samples: (0..n as usize)
                .map(|i| ThumbnailEntry {
                    sample: 100 + i,
                    label: Some(i as u32 % 3),
                    readable: i != 4,
                })
                .collect(),
            classes: vec!["a".into(), "b".into()],
        };
        (png, serde_json::to_vec(&index).unwrap())
    }

    /// The colour at the centre of `at`'s rectangle on its page.
    fn centre(a: &Atlas, at: TileAt) -> [u8; 4] {
        let p = &a.pages[at.page];
        let x = ((at.uv[0] + at.uv[2]) / 2.0 * p.width as f32) as u32;
        let y = ((at.uv[1] + at.uv[3]) / 2.0 * p.height as f32) as u32;
        let i = ((y * p.width + x) * 4) as usize;
        p.rgba[i..i + 4].try_into().unwrap()
    }

    #[test]
    fn every_sample_finds_its_own_tile_across_pages() {
        // 1024 px tiles: two per page side, four per page, so 7 tiles fill two pages
        let (png, json) = atlas(7, 1024, 3);
        let a = Atlas::decode(&png, &json).unwrap();
        assert_eq!(a.pages.len(), 2);
        assert!(
            a.pages
                .iter()
                .all(|p| p.width <= PAGE_SIDE && p.height <= PAGE_SIDE)
        );
        for i in 0..7usize {
            match a.tile(100 + i) {
                None => assert_eq!(i, 4, "only the unreadable sample has no tile"),
                Some(at) => assert_eq!(centre(&a, at), [i as u8, 7, 200, 255], "sample {i}"),
            }
        }
        assert_eq!(a.tile(99), None);
        assert_eq!(a.class_name(1), "b");
        assert_eq!(a.class_name(2), "2", "no name: the number");
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let (png, json) = atlas(3, 8, 2);
        assert!(Atlas::decode(&png[..png.len() / 2], &json).is_err());
        assert!(Atlas::decode(&png, b"{").is_err());
        let zero = br#"{"tile":0,"columns":1,"samples":[],"classes":[]}"#;
        assert!(Atlas::decode(&png, zero).unwrap_err().contains("tile 0"));
        // an index naming more tiles than the image holds: the image's unpainted corner of
        // its 2 × 2 grid (opaque black), no tile (and no memory) beyond
        let (_, many) = atlas(9, 8, 2);
        let a = Atlas::decode(&png, &many).unwrap();
        assert_eq!(centre(&a, a.tile(103).unwrap()), [0, 0, 0, 255]);
        assert_eq!(a.tile(104), None);
        assert_eq!(a.tile(108), None);
        assert_eq!(
            a.pages.iter().map(|p| p.rgba.len()).sum::<usize>(),
            4 * 8 * 8 * 4
        );
    }
}
