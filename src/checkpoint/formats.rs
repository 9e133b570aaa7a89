//! Key layouts of the checkpoint families of method.md §6 (MAE/timm, data2vec 2.0 fairseq,
//! MIM-Refiner kappamodules) and their translation to the canonical §6.1 layout.

use crate::host::{HostTensor, TensorMap};
use crate::model::pos_embed::PosInterp;
use anyhow::{Context, Result, bail};

/// Which family a checkpoint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Original MAE `.pth` (`{"model": timm keys}`), method.md §6.3.
    MaePth,
    /// data2vec 2.0 fairseq `.pt` (`modality_encoders.IMAGE.*`), method.md §6.4.
    Data2vec2,
    /// MIM-Refiner `.th` (`{"state_dict": kappamodules keys}`), method.md §6.2.
    RefinerTh,
    /// A bare PyTorch state dict (`torch.save(model.state_dict())`).
    TorchStateDict,
    /// timm/hub-named safetensors (also what `mimr export` writes).
    Safetensors,
}

impl Format {
    pub fn describe(self) -> &'static str {
        match self {
            Format::MaePth => "MAE checkpoint (.pth, torch zip, weights under `model`)",
            Format::Data2vec2 => "data2vec 2.0 fairseq checkpoint (.pt, torch zip)",
            Format::RefinerTh => "MIM-Refiner checkpoint (.th, torch zip, `state_dict`)",
            Format::TorchStateDict => "PyTorch state dict (torch zip)",
            Format::Safetensors => "safetensors (timm/hub key names)",
        }
    }

    /// The positional-embedding resize the family's own code uses (method.md §1.2): the
    /// reference's plain bicubic for MAE, data2vec 2.0 and MIM-Refiner files; timm's
    /// antialiased bicubic for timm/hub files (safetensors, bare state dicts such as
    /// `pytorch_model.bin`). Safetensors metadata `pos_interp` (written by `mimr export`)
    /// takes precedence over this.
    pub fn default_pos_interp(self) -> PosInterp {
        match self {
            Format::MaePth | Format::Data2vec2 | Format::RefinerTh => PosInterp::Bicubic,
            Format::TorchStateDict | Format::Safetensors => PosInterp::BicubicAntialias,
        }
    }
}

/// The canonical tensors plus what was dropped on the way.
pub struct Canonical {
    pub tensors: TensorMap,
    pub dropped: Vec<String>,
}

/// Keys that belong to pre-training-only parts (decoders, mask token, EMA teacher, classifier).
fn is_training_only(key: &str) -> bool {
    key.contains("decoder")
        || key == "mask_token"
        || key.ends_with("mask_token")
        || key == "_ema"
        || key.starts_with("_ema.")
        || key.starts_with("head.")
        || key.starts_with("fc_norm.")
        || key.starts_with("recon_proj")
}

const D2V2: &str = "modality_encoders.IMAGE.";

fn rename(key: &str) -> String {
    let k = key.strip_prefix(D2V2).map(|rest| {
        if let Some(r) = rest.strip_prefix("local_encoder.proj.") {
            format!("patch_embed.proj.{r}")
        } else if rest == "extra_tokens" {
            "cls_tokens.tokens".to_string()
        } else if rest == "fixed_positional_encoder.positions" {
            "pos_embed".to_string()
        } else if let Some(r) = rest.strip_prefix("context_encoder.norm.") {
            format!("embed_norm.{r}")
        } else {
            format!("{D2V2}{rest}")
        }
    });
    let k = k.unwrap_or_else(|| key.to_string());
    match k.as_str() {
        "cls_token" => "cls_tokens.tokens".into(),
        _ => k,
    }
}

/// Translates any supported layout to canonical §6.1 keys: renames, drops training-only keys,
/// turns a flat `pos_embed [1, (1+)N, D]` into `pos_embed.embed [1, H, W, D]` and folds a
/// non-zero CLS position row into the CLS token (identical forward, timm semantics).
pub fn canonicalize(raw: TensorMap) -> Result<Canonical> {
    let strip = ["model.", "module."]
        .into_iter()
        .find(|p| !raw.is_empty() && raw.keys().all(|k| k.starts_with(p)));
    let mut tensors = TensorMap::new();
    let mut dropped = Vec::new();
    for (key, t) in raw {
        let key = strip.map_or(key.clone(), |p| key[p.len()..].to_string());
        if is_training_only(&key) {
            dropped.push(key);
            continue;
        }
        tensors.insert(rename(&key), t);
    }
    if let Some(flat) = tensors.remove("pos_embed") {
        let (grid, cls_row) = split_flat_pos(flat)?;
        if let Some(row) = cls_row.filter(|r| r.iter().any(|v| *v != 0.0)) {
            let cls = tensors.get_mut("cls_tokens.tokens").context(
                "checkpoint has a pos_embed with a CLS row but no cls_token: cannot place the CLS position",
            )?;
            anyhow::ensure!(
                cls.numel() == row.len(),
                "cls_token and pos_embed widths differ"
            );
            cls.data.iter_mut().zip(row).for_each(|(c, r)| *c += r);
        }
        tensors.insert("pos_embed.embed".into(), grid);
    }
    Ok(Canonical { tensors, dropped })
}

/// Splits `[1, L, D]` into a square `[1, s, s, D]` grid and an optional CLS row.
fn split_flat_pos(flat: HostTensor) -> Result<(HostTensor, Option<Vec<f32>>)> {
    let [one, len, d] = flat.shape[..] else {
        bail!(
            "pos_embed has shape {:?}, expected [1, tokens, dim] or [1, H, W, dim]",
            flat.shape
        )
    };
    anyhow::ensure!(
        one == 1,
        "pos_embed has shape {:?}, expected a leading 1",
        flat.shape
    );
    let isqrt = |n: usize| (n as f64).sqrt().round() as usize;
    let (skip, side) = if isqrt(len) * isqrt(len) == len {
        (0, isqrt(len))
    } else if len > 1 && isqrt(len - 1) * isqrt(len - 1) == len - 1 {
        (1, isqrt(len - 1))
    } else {
        bail!("pos_embed has {len} positions: neither a square grid nor CLS + square grid")
    };
    let cls_row = (skip == 1).then(|| flat.data[..d].to_vec());
    let grid = HostTensor::new(vec![1, side, side, d], flat.data[skip * d..].to_vec())?;
    Ok((grid, cls_row))
}

/// Canonical → timm/hub key names (what `mimr export` writes and timm loads): `cls_token`,
/// `pos_embed [1, 1+N, D]` with a zero CLS row, everything else unchanged.
pub fn to_timm(canonical: &TensorMap) -> Result<TensorMap> {
    let mut out = TensorMap::new();
    for (k, t) in canonical {
        match k.as_str() {
            "cls_tokens.tokens" => {
                out.insert("cls_token".into(), t.clone());
            }
            "pos_embed.embed" => {
                let [_, h, w, d] = t.shape[..] else {
                    bail!("pos_embed.embed must be 4-D")
                };
                let mut data = vec![0.0; d];
                data.extend_from_slice(&t.data);
                out.insert(
                    "pos_embed".into(),
                    HostTensor::new(vec![1, 1 + h * w, d], data)?,
                );
            }
            _ => {
                out.insert(k.clone(), t.clone());
            }
        }
    }
    Ok(out)
}
