//! What a pre-training run shows while it trains (`[eval]`): kNN of the encoder's CLS token at
//! every block and after the final norm (logged as `eval` events), and reconstruction PNGs.

use super::config::PretrainConfig;
use crate::data::{self, Dataset};
use crate::host::host;
use crate::model::features::{self, Tap};
use crate::model::mae::{Mae, MaeConfig, patchify, random_masking};
use crate::model::vit::{Pool, Vit};
use crate::refine::config::OnlineEvalConfig;
use crate::refine::online_eval::{self, EMBED_BATCH, EvalSets, eval_image};
use crate::rng::Rng;
use crate::runlog::{Encoder, Event, Reconstructions, RunLog};
use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;
use std::sync::Arc;

/// Sub-stream key of the reconstructions' fixed masking (`b"RECO"`).
const RECON_KEY: u64 = 0x5245_434F;
/// Folder of the reconstruction PNGs in the run directory.
pub const RECON_DIR: &str = "reconstructions";
/// Reconstruction tiles are the images scaled up (nearest neighbour) to about this many pixels.
const TILE_TARGET: usize = 96;

/// The fixed samples and settings of a run's online evaluation.
pub struct Monitor {
    cfg: OnlineEvalConfig,
    sets: EvalSets,
    reconstructions: usize,
    size: usize,
    views: crate::data::MultiCropConfig,
    seed: u64,
}

impl Monitor {
    /// The evaluation samples of `cfg.eval` over the training split `train`; `None` when off.
    pub fn new(cfg: &PretrainConfig, train: Arc<dyn Dataset>) -> Result<Option<Self>> {
        let online = cfg.eval.online();
        if !online.enabled() {
            return Ok(None);
        }
        let sets = EvalSets::new(
            &cfg.data,
            train,
            online.split,
            online.train_size,
            online.test_size,
        )?;
        let v = &cfg.data.views;
        Ok(Some(Self {
            cfg: online,
            sets,
            reconstructions: cfg.eval.reconstructions,
            size: v.global_size(),
            views: v.clone(),
            seed: cfg.run.seed,
        }))
    }

    /// True at the end of every `every_epochs`-th epoch and at this invocation's last step.
    pub fn due(&self, step: u64, steps_per_epoch: u64, end: u64) -> bool {
        step == end || step.is_multiple_of(steps_per_epoch.saturating_mul(self.cfg.every_epochs))
    }

    /// Evaluates the encoder of `mae` (an inference copy) after `step` updates and writes the
    /// reconstructions into `dir`.
    pub fn run(
        &self,
        (mae, cfg): (&Mae, &MaeConfig),
        at: (u64, f64),
        device: &Device,
        dir: &Path,
        log: &mut RunLog,
    ) -> Result<()> {
        self.evaluate(&mae.encoder, cfg.encoder.depth, at, device, log)?;
        if self.reconstructions == 0 {
            return Ok(());
        }
        let (png, samples) = self.reconstruct(mae, cfg, device)?;
        let image = format!("{RECON_DIR}/step-{:09}.png", at.0);
        std::fs::create_dir_all(dir.join(RECON_DIR))?;
        crate::fsutil::write_atomic(&dir.join(&image), &png)?;
        log.write(&Event::Reconstructions(Reconstructions {
            step: at.0,
            image,
            samples,
            mask_ratio: cfg.mask_ratio,
        }))
    }

    /// The eval transform with the run's normalisation.
    fn eval_image(&self, img: &image::RgbImage) -> Vec<f32> {
        eval_image(&self.views, img, self.size)
    }

    /// Scores the CLS token of every block (`cls<i>`) and of the final-norm output (`final`).
    fn evaluate(
        &self,
        vit: &Vit,
        depth: usize,
        (step, epoch): (u64, f64),
        device: &Device,
        log: &mut RunLog,
    ) -> Result<()> {
        let mut taps: Vec<(String, Tap)> =
            (0..depth).map(|b| (format!("cls{b}"), Some(b))).collect();
        taps.push(("final".into(), None));
        let which: Vec<Tap> = taps.iter().map(|t| t.1).collect();
        let s = self.size;
        let embed = |imgs: Vec<f32>, n: usize| -> Result<Vec<Vec<f32>>> {
            let chunks = features::chunks_of(&imgs, [n, 3, s, s], EMBED_BATCH);
            let f = features::extract(vit, chunks, &which, Pool::Cls, device, |_| {})?;
            Ok(f.into_iter().map(|f| f.data).collect())
        };
        let (bank, queries) = self.sets.embed(&|img| self.eval_image(img), &embed)?;
        let (heads, summary) =
            online_eval::score(&taps, &bank, &queries, &self.cfg.scoring(), device)?;
        tracing::info!("[eval] step {step}: {}", summary.join(", "));
        let event = online_eval::eval_event(
            (step, epoch),
            Encoder::Live,
            &self.cfg,
            (&bank, &queries),
            heads,
        );
        log.write(&event)
    }

    /// A PNG with one column per fixed query image: the image, its visible patches (the masked
    /// ones grey), and the reconstruction (predicted patches, de-normalised by the target
    /// patch's statistics under `norm_pix_loss`, pasted among the visible ones).
    /// Returns the PNG and the dataset indices of its columns.
    fn reconstruct(
        &self,
        mae: &Mae,
        cfg: &MaeConfig,
        device: &Device,
    ) -> Result<(Vec<u8>, Vec<usize>)> {
        let (ds, indices) = self.sets.some_queries(self.reconstructions);
        let (mut imgs, mut shown, mut skipped) = (Vec::new(), Vec::new(), 0);
        for i in indices {
            if let Some(sample) = data::get_or_skip(ds, i, &mut skipped) {
                imgs.extend(self.eval_image(&sample.image));
                shown.push(i);
            }
        }
        let s = self.size;
        let n = imgs.len() / (3 * s * s);
        anyhow::ensure!(n > 0, "no readable image to reconstruct");
        let x = Tensor::<4>::from_data(TensorData::new(imgs, [n, 3, s, s]), device);
        let l = cfg.num_patches();
        let mut rng = Rng::keyed(&[self.seed, RECON_KEY]);
        let masking = random_masking(n, l, cfg.mask_ratio, &mut rng)?;
        let out = mae.forward(x.clone(), &masking)?;
        let p = cfg.encoder.patch_size;
        let target = host(patchify(x, p)?)?.data;
        let mut pred = host(out.pred)?.data;
        if cfg.norm_pix_loss {
            denormalise_patches(&mut pred, &target, p * p * 3);
        }
        let grid = PatchGrid {
            p,
            side: s / p,
            mean: self.views.mean,
            std: self.views.std,
        };
        let mut canvas = Canvas::new(n, s);
        for i in 0..n {
            let rows = i * l..(i + 1) * l;
            let (t, r, m) = (&target, &pred, &masking.mask.data[rows.clone()]);
            let pd = p * p * 3;
            let patch =
                |src: &[f32], k: usize| src[(i * l + k) * pd..(i * l + k + 1) * pd].to_vec();
            canvas.draw(i, 0, &grid, |k| Some(patch(t, k)));
            canvas.draw(i, 1, &grid, |k| (m[k] < 0.5).then(|| patch(t, k)));
            canvas.draw(i, 2, &grid, |k| {
                Some(if m[k] < 0.5 { patch(t, k) } else { patch(r, k) })
            });
        }
        Ok((canvas.png()?, shown))
    }
}

/// Undoes MAE's per-patch target normalisation on predictions: `x·√(var + 1e-6) + mean` with
/// the target patch's mean and unbiased variance.
fn denormalise_patches(pred: &mut [f32], target: &[f32], pd: usize) {
    for (pr, t) in pred.chunks_mut(pd).zip(target.chunks(pd)) {
        let mean = t.iter().map(|&v| v as f64).sum::<f64>() / pd as f64;
        let var =
            t.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (pd as f64 - 1.0).max(1.0);
        let scale = (var + 1e-6).sqrt();
        for v in pr {
            *v = (*v as f64 * scale + mean) as f32;
        }
    }
}

/// How patch vectors (`(row, col, channel)` within a patch) map back to normalised pixels.
struct PatchGrid {
    p: usize,
    side: usize,
    mean: [f32; 3],
    std: [f32; 3],
}

/// Reconstruction tiles: one column per image, three rows, 2 px gaps on white.
struct Canvas {
    img: image::RgbImage,
    tile: usize,
    scale: usize,
}

impl Canvas {
    const GAP: usize = 2;

    fn new(columns: usize, size: usize) -> Self {
        let scale = (TILE_TARGET / size.max(1)).max(1);
        let tile = size * scale;
        let (w, h) = (columns * (tile + Self::GAP), 3 * (tile + Self::GAP));
        let white = image::Rgb([255, 255, 255]);
        Self {
            img: image::RgbImage::from_pixel(w as u32, h as u32, white),
            tile,
            scale,
        }
    }

    /// Draws tile (`col`, `row`): patch `k` from `patch(k)`, or grey when it gives `None`.
    fn draw(
        &mut self,
        col: usize,
        row: usize,
        g: &PatchGrid,
        patch: impl Fn(usize) -> Option<Vec<f32>>,
    ) {
        let (x0, y0) = (col * (self.tile + Self::GAP), row * (self.tile + Self::GAP));
        for k in 0..g.side * g.side {
            let values = patch(k);
            let (gy, gx) = (k / g.side, k % g.side);
            for py in 0..g.p {
                for px in 0..g.p {
                    let rgb = match &values {
                        None => [128, 128, 128],
                        Some(v) => std::array::from_fn(|c| {
                            let x = v[(py * g.p + px) * 3 + c] * g.std[c] + g.mean[c];
                            (x.clamp(0.0, 1.0) * 255.0).round() as u8
                        }),
                    };
                    let k = self.scale;
                    let (y, x) = ((gy * g.p + py) * k, (gx * g.p + px) * k);
                    for dy in 0..k {
                        for dx in 0..k {
                            let at = ((x0 + x + dx) as u32, (y0 + y + dy) as u32);
                            self.img.put_pixel(at.0, at.1, image::Rgb(rgb));
                        }
                    }
                }
            }
        }
    }

    fn png(&self) -> Result<Vec<u8>> {
        let mut png = Vec::new();
        self.img
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        Ok(png)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_drawn_back_where_patchify_took_them() {
        // a 8×8 image, patch 4: every pixel and channel distinct, so any swap of rows/columns,
        // of positions within a patch or of channels shows
        let (s, p) = (8usize, 4usize);
        let (mean, std) = ([0.1f32, 0.2, 0.3], [0.5f32, 0.25, 0.125]);
        let value = |c: usize, y: usize, x: usize| ((c * 64 + y * 8 + x) as f32) / 192.0;
        let mut data = Vec::new();
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    data.push((value(c, y, x) - mean[c]) / std[c]);
                }
            }
        }
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 3, s, s]), &Device::flex());
        let patches = host(patchify(x, p).unwrap()).unwrap().data;
        let pd = p * p * 3;
        let grid = PatchGrid {
            p,
            side: s / p,
            mean,
            std,
        };
        let mut canvas = Canvas::new(1, s);
        canvas.draw(0, 0, &grid, |k| {
            Some(patches[k * pd..(k + 1) * pd].to_vec())
        });
        let k = canvas.scale;
        assert_eq!(k, TILE_TARGET / s);
        for y in 0..s {
            for x in 0..s {
                let got = canvas
                    .img
                    .get_pixel((x * k + k / 2) as u32, (y * k) as u32)
                    .0;
                let want: [u8; 3] =
                    std::array::from_fn(|c| (value(c, y, x).clamp(0.0, 1.0) * 255.0).round() as u8);
                assert_eq!(got, want, "pixel ({y}, {x})");
            }
        }
    }

    #[test]
    fn denormalising_a_normalised_patch_gives_it_back() {
        let target = [0.1f32, 0.5, -0.3, 0.9];
        let n = target.len() as f64;
        let mean = target.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = target
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        let mut pred: Vec<f32> = target
            .iter()
            .map(|&v| ((v as f64 - mean) / (var + 1e-6).sqrt()) as f32)
            .collect();
        denormalise_patches(&mut pred, &target, 4);
        for (a, b) in pred.iter().zip(target) {
            assert!((a - b).abs() < 1e-6, "{pred:?}");
        }
    }
}
