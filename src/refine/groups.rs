//! Parameter groups of a `Refiner` (method.md §4.2, §1.5): the LR scale (layer decay, freezing)
//! and the weight decay of every trainable parameter, decided from its Burn module path.

use super::config::StageConfig;
use super::optim::Group;
use super::schedule::{decays, layer_scale};

/// The group rule of one stage for an encoder of `depth` blocks. Paths are those of
/// `trainer::Refiner`: `encoder.<Vit path>` and `heads.<h>.<Head path>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Groups {
    /// Stage 2 trains the heads only: every encoder parameter gets LR scale 0.
    pub encoder_trained: bool,
    pub depth: usize,
    pub layer_decay: f64,
    pub freeze_blocks: usize,
    pub encoder_weight_decay: f64,
    pub head_weight_decay: f64,
}

impl Groups {
    /// The rule of `stage` (2 or 3) with that stage's settings `sc`.
    pub fn new(stage: u8, sc: &StageConfig, depth: usize) -> Self {
        Self {
            encoder_trained: stage == 3,
            depth,
            layer_decay: sc.layer_decay,
            freeze_blocks: sc.freeze_blocks,
            encoder_weight_decay: sc.encoder_weight_decay,
            head_weight_decay: sc.head_weight_decay,
        }
    }

    /// LR scale and weight decay of the parameter at `path` with `ndim` dimensions.
    pub fn of(&self, path: &str, ndim: usize) -> Group {
        match path.strip_prefix("encoder.") {
            Some(p) => Group {
                lr_scale: self.encoder_lr_scale(p),
                weight_decay: self.decay(p, ndim, self.encoder_weight_decay),
            },
            None => Group {
                lr_scale: 1.0,
                weight_decay: self.decay(path, ndim, self.head_weight_decay),
            },
        }
    }

    /// Layer decay (§1.5), or 0 in stage 2 and for frozen parameters: blocks `0..freeze_blocks`
    /// and, when any block is frozen, the stem (everything but blocks and the final norm).
    fn encoder_lr_scale(&self, p: &str) -> f64 {
        let frozen = self.freeze_blocks > 0
            && !p.starts_with("norm.")
            && block_of(p).is_none_or(|j| j < self.freeze_blocks);
        if !self.encoder_trained || frozen {
            0.0
        } else {
            layer_scale(p, self.depth, self.layer_decay)
        }
    }

    fn decay(&self, p: &str, ndim: usize, lambda: f64) -> f64 {
        if decays(p, ndim) { lambda } else { 0.0 }
    }
}

/// Block index of an encoder parameter path `blocks.<j>.…`.
fn block_of(path: &str) -> Option<usize> {
    path.strip_prefix("blocks.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}
