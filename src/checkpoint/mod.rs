//! Checkpoint import and export without Python (method.md §6): detects the file family, reads
//! its tensors, infers the architecture from shapes and validates every key and shape.

pub mod formats;
pub mod pickle;
pub mod st;
pub mod torch_zip;

use crate::host::TensorMap;
use crate::model::pos_embed::PosInterp;
use crate::model::vit::{BlockStyle, Vit, VitConfig};
use anyhow::{Context, Result, bail};
pub use formats::Format;
use pickle::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A checkpoint read into canonical tensors, with its inferred architecture.
pub struct Checkpoint {
    pub format: Format,
    pub config: VitConfig,
    pub tensors: TensorMap,
    /// How the head count was decided (metadata, flag, preset).
    pub heads_source: String,
    /// Keys dropped as pre-training-only (decoder, mask token, …).
    pub dropped: Vec<String>,
    /// Scalar extras found in the file (epoch, ema, stage_id, …) as text.
    pub extras: BTreeMap<String, String>,
}

/// Raw tensors and hints gathered from a file, before architecture inference.
struct RawCheckpoint {
    format: Format,
    tensors: TensorMap,
    heads: Option<usize>,
    /// Safetensors metadata `pos_interp` (what `mimr export` records).
    pos_interp: Option<PosInterp>,
    extras: BTreeMap<String, String>,
}

/// Safetensors metadata key recording the positional-embedding resize convention.
pub const POS_INTERP_KEY: &str = "pos_interp";

/// Reads `path`; `heads` overrides the attention-head count when given. The positional
/// resize (`config.pos_interp`) is the file's metadata or its family's default
/// ([`Format::default_pos_interp`]); [`Checkpoint::with_pos_interp`] overrides it.
pub fn load(path: &Path, heads: Option<usize>) -> Result<Checkpoint> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let raw = read_raw(path, bytes)?;
    let canon =
        formats::canonicalize(raw.tensors).with_context(|| format!("{}", path.display()))?;
    let (heads, heads_source) = match (heads, raw.heads) {
        (Some(h), _) => (Some(h), "--heads flag".to_string()),
        (None, Some(h)) => (Some(h), "checkpoint metadata".to_string()),
        (None, None) => (None, String::new()),
    };
    let (mut config, heads_source) = infer_config(&canon.tensors, heads, heads_source)
        .with_context(|| format!("{}", path.display()))?;
    config.pos_interp = raw
        .pos_interp
        .unwrap_or_else(|| raw.format.default_pos_interp());
    validate(&config, &canon.tensors).with_context(|| {
        format!(
            "{}: does not match the inferred architecture",
            path.display()
        )
    })?;
    Ok(Checkpoint {
        format: raw.format,
        config,
        tensors: canon.tensors,
        heads_source,
        dropped: canon.dropped,
        extras: raw.extras,
    })
}

impl Checkpoint {
    /// Replaces the family's positional resize with `choice` when given (`--pos-interp`,
    /// `model.pos_interp`).
    pub fn with_pos_interp(mut self, choice: Option<PosInterp>) -> Self {
        if let Some(p) = choice {
            self.config.pos_interp = p;
        }
        self
    }

    /// Builds the Burn model on `device`.
    pub fn build(&self, device: &burn::tensor::Device) -> Result<Vit> {
        Vit::from_tensors(&self.config, &self.tensors, device)
    }
}

fn read_raw(path: &Path, bytes: Vec<u8>) -> Result<RawCheckpoint> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return read_torch(path, bytes);
    }
    if st::looks_like(&bytes) {
        let f = st::parse(path, &bytes)?;
        let heads = match f.metadata.get("num_heads") {
            Some(v) => Some(v.parse().with_context(|| {
                format!(
                    "{}: metadata num_heads = `{v}` is not an integer",
                    path.display()
                )
            })?),
            None => None,
        };
        let pos_interp = match f.metadata.get(POS_INTERP_KEY) {
            Some(v) => Some(PosInterp::parse(v).with_context(|| {
                format!(
                    "{}: metadata {POS_INTERP_KEY} = `{v}`; re-export the file or pass --pos-interp",
                    path.display()
                )
            })?),
            None => None,
        };
        let extras = f
            .metadata
            .into_iter()
            .filter(|(k, _)| k != "num_heads" && k != POS_INTERP_KEY)
            .collect();
        return Ok(RawCheckpoint {
            format: Format::Safetensors,
            tensors: f.tensors,
            heads,
            pos_interp,
            extras,
        });
    }
    if bytes.first() == Some(&0x80) {
        bail!(
            "{}: legacy (pre-1.6) PyTorch serialisation is not supported; re-save it with a current \
             torch (`torch.save(torch.load(f), f2)`) or convert it to safetensors",
            path.display()
        );
    }
    bail!(
        "{}: unrecognised checkpoint format (expected a torch zip .pth/.pt/.th or a .safetensors file)",
        path.display()
    )
}

fn read_torch(path: &Path, bytes: Vec<u8>) -> Result<RawCheckpoint> {
    let mut ar = torch_zip::TorchArchive::open(path, bytes)?;
    let root = ar.root.clone();
    let mut extras = BTreeMap::new();
    let mut heads = None;
    let (format, weights_key) = if root.get("state_dict").is_some() {
        if let Some(kw) = root.get("ctor_kwargs") {
            heads = int_of(kw.get("num_attn_heads")).or_else(|| int_of(kw.get("num_heads")));
            collect_scalars(kw, "ctor_kwargs.", &mut extras);
        }
        (Format::RefinerTh, Some("state_dict"))
    } else if let Some(model) = root.get("model") {
        let d2v2 = matches!(model, Value::Dict(items) if items.iter().any(|(k, _)|
            matches!(k, Value::Str(s) if s.contains("modality_encoders."))));
        (
            if d2v2 {
                Format::Data2vec2
            } else {
                Format::MaePth
            },
            Some("model"),
        )
    } else {
        (Format::TorchStateDict, None)
    };
    collect_scalars(&root, "", &mut extras);
    let dict = match weights_key {
        Some(k) => root.get(k).cloned().unwrap_or(Value::None),
        None => root,
    };
    let tensors = ar.tensors_of(&dict, weights_key.unwrap_or("<root>"))?;
    anyhow::ensure!(
        !tensors.is_empty(),
        "{}: no tensors found in the checkpoint",
        path.display()
    );
    Ok(RawCheckpoint {
        format,
        tensors,
        heads,
        pos_interp: None,
        extras,
    })
}

fn int_of(v: Option<&Value>) -> Option<usize> {
    match v {
        Some(Value::Int(i)) if *i > 0 => Some(*i as usize),
        _ => None,
    }
}

fn collect_scalars(v: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    if let Value::Dict(items) = v {
        for (k, val) in items {
            let Value::Str(k) = k else { continue };
            let text = match val {
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Str(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Dict(_) if prefix.is_empty() && k == "abs_ckpt" => {
                    collect_scalars(val, "abs_ckpt.", out);
                    continue;
                }
                _ => continue,
            };
            out.insert(format!("{prefix}{k}"), text);
        }
    }
}

/// Infers the architecture from canonical tensor shapes (method.md §1.2, §6).
fn infer_config(
    t: &TensorMap,
    heads: Option<usize>,
    mut heads_source: String,
) -> Result<(VitConfig, String)> {
    let pw = t.get("patch_embed.proj.weight").context(
        "no patch embedding found (`patch_embed.proj.weight`, or data2vec's \
         `modality_encoders.IMAGE.local_encoder.proj.weight`): is this a ViT encoder checkpoint?",
    )?;
    let [dim, in_chans, p, p2] = pw.shape[..] else {
        bail!(
            "patch_embed.proj.weight has shape {:?}, expected [dim, channels, patch, patch]",
            pw.shape
        )
    };
    anyhow::ensure!(p == p2, "non-square patches {p}x{p2} are not supported");
    let pos = t
        .get("pos_embed.embed")
        .context("no positional embedding (`pos_embed`) found")?;
    let grid = match pos.shape[..] {
        [1, h, w, _] => [h, w],
        _ => bail!(
            "pos_embed has shape {:?}, expected [1, H, W, {dim}]",
            pos.shape
        ),
    };
    let depth = (0..)
        .take_while(|i| t.contains_key(&format!("blocks.{i}.norm1.weight")))
        .count();
    anyhow::ensure!(
        depth > 0,
        "no transformer blocks found (`blocks.0.norm1.weight`)"
    );
    let mlp_hidden = t
        .get("blocks.0.mlp.fc1.weight")
        .map(|w| w.shape[0])
        .context("missing `blocks.0.mlp.fc1.weight`")?;
    let embed_norm = t.contains_key("embed_norm.weight");
    let final_norm = t.contains_key("norm.weight");
    let block_style = if embed_norm && !final_norm {
        BlockStyle::PostNorm
    } else {
        BlockStyle::PreNorm
    };
    let heads = match heads {
        Some(h) => h,
        None => match VitConfig::standard_heads(dim) {
            Some(h) => {
                heads_source = format!("standard ViT with width {dim}");
                h
            }
            None => bail!(
                "cannot tell the number of attention heads: the file has no metadata and width {dim} \
                 is not a standard ViT width; pass --heads N (N must divide {dim}; head_dim 64 would be {})",
                dim / 64
            ),
        },
    };
    let config = VitConfig {
        patch_size: p,
        dim,
        depth,
        heads,
        mlp_hidden,
        in_chans,
        grid,
        block_style,
        embed_norm,
        final_norm,
        layer_scale: t.contains_key("blocks.0.ls1.gamma"),
        pos_interp: PosInterp::default(),
    };
    config.validate()?;
    Ok((config, heads_source))
}

/// Compares the tensors with what `cfg` expects; one error lists every problem.
pub fn validate(cfg: &VitConfig, t: &TensorMap) -> Result<()> {
    let expected: HashMap<String, Vec<usize>> = cfg.expected_shapes().into_iter().collect();
    let mut problems = Vec::new();
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    for name in names {
        match t.get(name) {
            None => problems.push(format!(
                "  missing    {name}: expected shape {:?}",
                expected[name]
            )),
            Some(x) if x.shape != expected[name] => problems.push(format!(
                "  wrong shape {name}: expected {:?}, found {:?}",
                expected[name], x.shape
            )),
            _ => {}
        }
    }
    for (name, x) in t {
        if !expected.contains_key(name) {
            problems.push(format!("  unexpected {name}: shape {:?}", x.shape));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s) with the checkpoint's tensors:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    Ok(())
}

/// Writes `ck` in timm key names with metadata describing the architecture and the
/// positional resize convention (`pos_interp`), so that mimr reloads it unchanged.
/// Writes an encoder's weights (canonical names) with its architecture as an importable
/// checkpoint in timm names (`mimr export` format); `source` says which trainer made it.
pub fn export_encoder(
    config: &VitConfig,
    tensors: TensorMap,
    source: &str,
    out: &std::path::Path,
) -> Result<()> {
    let ck = Checkpoint {
        format: Format::Safetensors,
        config: config.clone(),
        tensors,
        heads_source: source.into(),
        dropped: Vec::new(),
        extras: Default::default(),
    };
    export_timm(&ck, out)
}

pub fn export_timm(ck: &Checkpoint, out: &std::path::Path) -> Result<()> {
    let c = &ck.config;
    anyhow::ensure!(
        c.grid[0] == c.grid[1],
        "cannot export a non-square positional grid {}x{} in timm layout",
        c.grid[0],
        c.grid[1]
    );
    let timm = formats::to_timm(&ck.tensors)?;
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("num_heads".to_string(), c.heads.to_string()),
        (
            "block_style".to_string(),
            serde_json::to_value(c.block_style)?
                .as_str()
                .unwrap_or("")
                .to_string(),
        ),
        (POS_INTERP_KEY.to_string(), c.pos_interp.name().to_string()),
        (
            "exported_by".to_string(),
            format!("mimr {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    st::write(out, &timm, meta)
}
