//! Images of the NN pairs the loss used: on logged steps, within a small share of the run's wall
//! time, the samples of an `nn_examples` event as `nn_examples/step-<step:09>.png` and `.json`.

use crate::data::Dataset;
use crate::runlog::NnExamples;
use crate::train::thumbnails;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Folder of the pair atlases inside the run directory.
pub const FOLDER: &str = "nn_examples";
/// Pair atlases kept: the newest by step (older ones are deleted after each write).
pub const KEEP: usize = 3;
/// Largest share of the wall time since the writer started that writing pair atlases may take.
/// A strip decodes up to `8 × (heads + 1)` images, so a fast run (or a dataset slow to decode)
/// gets one every few logged steps instead of every one: training never slows by more than this.
pub const BUDGET: f64 = 0.05;

/// Writes pair atlases within [`BUDGET`].
pub struct NnThumbs {
    started: Instant,
    spent: Duration,
}

impl Default for NnThumbs {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            spent: Duration::ZERO,
        }
    }
}

impl NnThumbs {
    /// Writes the atlas of `ex` when the budget allows and names it in `ex.thumbnails`; a failed
    /// write is only a warning (the event then has no images; training goes on).
    pub fn attach(&mut self, dir: &Path, ds: &dyn Dataset, ex: &mut NnExamples) {
        if !due(self.spent, self.started.elapsed()) {
            return;
        }
        let began = Instant::now();
        match write(dir, ds, ex) {
            Ok(image) => ex.thumbnails = Some(image),
            Err(e) => tracing::warn!("NN pair images of step {}: {e:#}", ex.step),
        }
        self.spent += began.elapsed();
    }
}

/// Whether another atlas fits the budget: `spent` writing so far within `elapsed` in total.
pub fn due(spent: Duration, elapsed: Duration) -> bool {
    spent.as_secs_f64() <= BUDGET * elapsed.as_secs_f64()
}

/// The atlas of step `step`, relative to the run directory.
pub fn image_file(step: u64) -> String {
    format!("{FOLDER}/step-{step:09}.png")
}

/// Writes the atlas of `ex`'s samples ([`NnExamples::samples`], tiles as `thumbnails.png`'s) and
/// its index atomically, prunes the folder to the newest [`KEEP`]; returns the atlas' path.
pub fn write(dir: &Path, ds: &dyn Dataset, ex: &NnExamples) -> Result<String> {
    let (atlas, index) = thumbnails::atlas(ds, &ex.samples());
    let image = image_file(ex.step);
    let index_file = format!("{FOLDER}/step-{:09}.json", ex.step);
    thumbnails::write_files(dir, &image, &index_file, &atlas, &index)?;
    prune(&dir.join(FOLDER), KEEP, ex.step)?;
    Ok(image)
}

/// Deletes the atlases of steps after `current` (left behind when a run resumed from an earlier
/// checkpoint) and all but the newest `keep` of the rest.
pub fn prune(folder: &Path, keep: usize, current: u64) -> Result<()> {
    let mut steps = atlas_steps(folder)?;
    steps.sort_unstable_by(|a, b| b.cmp(a));
    steps.dedup();
    let newer = steps.iter().take_while(|&&s| s > current).count();
    for &step in steps[..newer]
        .iter()
        .chain(steps[newer..].iter().skip(keep))
    {
        for ext in ["png", "json"] {
            let path = folder.join(format!("step-{step:09}.{ext}"));
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot delete {}", path.display()));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The steps of the `step-<n>.png` / `step-<n>.json` files in `folder`.
fn atlas_steps(folder: &Path) -> Result<Vec<u64>> {
    let entries =
        std::fs::read_dir(folder).with_context(|| format!("cannot list {}", folder.display()))?;
    let names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
    Ok(names.filter_map(|n| step_of(&n)).collect())
}

/// `step-000000012.png` → 12 (also `.json`); anything else → `None`.
fn step_of(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("step-")?;
    let digits = (stem.strip_suffix(".png")).or_else(|| stem.strip_suffix(".json"))?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_budget_allows_the_first_atlas_then_a_share_of_the_time() {
        let ms = Duration::from_millis;
        assert!(due(ms(0), ms(0)));
        assert!(!due(ms(20), ms(100)), "20 ms of 100 ms is over 5 %");
        assert!(due(ms(20), ms(400)));
        assert!(!due(ms(21), ms(400)));
    }

    #[test]
    fn only_atlas_names_give_a_step() {
        assert_eq!(step_of("step-000000012.png"), Some(12));
        assert_eq!(step_of("step-000000012.json"), Some(12));
        for other in [
            ".step-000000012.png.tmp-5",
            "step-x.png",
            "step-1.txt",
            "thumbs.png",
        ] {
            assert_eq!(step_of(other), None, "{other}");
        }
    }
}
