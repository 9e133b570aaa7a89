//! Learning-rate schedule and layer-wise decay (method.md §4.2, §1.5): LR per 256 samples,
//! linear warmup with `peak·(s+1)/(W+1)`, cosine to a floor, per-parameter-group scales.

use serde::{Deserialize, Serialize};

/// Warmup + cosine schedule over optimizer updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak LR (already scaled by batch/256).
    pub peak: f64,
    /// Final LR of the cosine (method.md: 1e-6).
    pub floor: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

/// Peak LR for a base LR given per 256 samples (method.md §4.2).
pub fn scaled_lr(base_per_256: f64, batch_size: usize) -> f64 {
    base_per_256 * batch_size as f64 / 256.0
}

impl Schedule {
    /// LR at update `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / (self.warmup_steps + 1) as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.floor + 0.5 * (self.peak - self.floor) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// Layer-decay scale of an encoder parameter (method.md §1.5): patch embed / CLS / pos /
/// embed_norm → γ^(depth+1); block j → γ^(depth−j); final norm → 1.
pub fn layer_scale(param: &str, depth: usize, gamma: f64) -> f64 {
    if let Some(rest) = param.strip_prefix("blocks.") {
        let j: usize = rest
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        gamma.powi((depth - j.min(depth)) as i32)
    } else if param.starts_with("norm.") {
        1.0
    } else {
        gamma.powi(depth as i32 + 1)
    }
}

/// Weight decay applies to matrices only: not to biases, 1-D parameters (norms, BN, LayerScale)
/// or the CLS token (method.md §4.2).
pub fn decays(param: &str, ndim: usize) -> bool {
    !(param.ends_with(".bias") || ndim <= 1 || param.contains("cls_token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_starts_above_zero_and_cosine_ends_at_floor() {
        let s = Schedule {
            peak: 1.0,
            floor: 1e-6,
            warmup_steps: 4,
            total_steps: 14,
        };
        assert_eq!(s.lr(0), 0.2);
        assert_eq!(s.lr(3), 0.8);
        assert!((s.lr(4) - 1.0).abs() < 1e-12);
        assert!((s.lr(9) - (1e-6 + 0.5 * (1.0 - 1e-6))).abs() < 1e-12); // half-way
        assert!((s.lr(14) - 1e-6).abs() < 1e-12);
        assert!((s.lr(100) - 1e-6).abs() < 1e-12);
    }

    #[test]
    fn layer_decay_matches_method_1_5_for_vit_l() {
        let g = 0.65;
        assert_eq!(layer_scale("norm.weight", 24, g), 1.0);
        assert!((layer_scale("blocks.23.mlp.fc1.weight", 24, g) - 0.65).abs() < 1e-12);
        assert!((layer_scale("blocks.0.attn.qkv.weight", 24, g) - 0.65f64.powi(24)).abs() < 1e-15);
        assert!((layer_scale("blocks.0.norm1.weight", 24, g) - 3.2e-5).abs() < 1e-6);
        assert!((layer_scale("patch_embed.proj.weight", 24, g) - 0.65f64.powi(25)).abs() < 1e-15);
        assert_eq!(
            layer_scale("cls_token", 24, g),
            layer_scale("pos_embed", 24, g)
        );
    }

    #[test]
    fn weight_decay_exclusions() {
        assert!(decays("blocks.0.attn.qkv.weight", 2));
        assert!(!decays("blocks.0.attn.qkv.bias", 1));
        assert!(!decays("norm.weight", 1));
        assert!(!decays("cls_token", 3));
        assert!(decays("patch_embed.proj.weight", 4));
        assert_eq!(scaled_lr(4e-4, 1024), 1.6e-3);
    }
}
