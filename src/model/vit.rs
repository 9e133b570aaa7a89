//! The Vision Transformer of MIM encoders (MAE/dBOT/MAWS pre-norm, data2vec 2.0 post-norm),
//! method.md §1.1–§1.2: its config, presets, modules and a forward that taps any block.

use super::pos_embed::{self, PosInterp};
use crate::host::{HostTensor, TensorMap, host};
use anyhow::{Context, Result, bail};
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData, activation};
use serde::{Deserialize, Serialize};

/// LayerNorm epsilon of every norm in the model (method.md §1.2).
pub const LN_EPS: f64 = 1e-6;

/// Where the LayerNorms of a block sit (method.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockStyle {
    /// `x + f(LN(x))`, a final `norm` after the last block (MAE, dBOT, CrossMAE, MAWS).
    PreNorm,
    /// `LN(x + f(x))`, an `embed_norm` before the first block, no final norm (data2vec 2.0).
    PostNorm,
}

/// Architecture of a ViT encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub patch_size: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_hidden: usize,
    pub in_chans: usize,
    /// Patch grid `[rows, cols]` of the stored positional embedding.
    pub grid: [usize; 2],
    pub block_style: BlockStyle,
    pub embed_norm: bool,
    pub final_norm: bool,
    pub layer_scale: bool,
    /// How the positional grid is resized for other image sizes (method.md §1.2); checkpoints
    /// choose it by family (`checkpoint::Format::default_pos_interp`).
    #[serde(default)]
    pub pos_interp: PosInterp,
}

impl VitConfig {
    /// A named preset (method.md §1.1) at a given image size.
    pub fn preset(name: &str, image_size: usize) -> Result<Self> {
        let (patch, dim, depth, heads) = match name {
            "debug" => (16, 16, 2, 2),
            "tiny" => (16, 192, 12, 3),
            "small" => (16, 384, 12, 6),
            "base" => (16, 768, 12, 12),
            "large" => (16, 1024, 24, 16),
            "huge" => (14, 1280, 32, 16),
            "2b" => (14, 2560, 24, 32),
            other => bail!(
                "unknown ViT preset `{other}`: use debug, tiny, small, base, large, huge or 2b"
            ),
        };
        Ok(Self::prenorm(patch, dim, depth, heads, image_size))
    }

    /// A pre-norm ViT (MAE layout) with the standard 4× MLP.
    pub fn prenorm(
        patch: usize,
        dim: usize,
        depth: usize,
        heads: usize,
        image_size: usize,
    ) -> Self {
        Self {
            patch_size: patch,
            dim,
            depth,
            heads,
            mlp_hidden: 4 * dim,
            in_chans: 3,
            grid: [image_size / patch, image_size / patch],
            block_style: BlockStyle::PreNorm,
            embed_norm: false,
            final_norm: true,
            layer_scale: false,
            pos_interp: PosInterp::Bicubic,
        }
    }

    /// Heads of the standard ViT with this width (head_dim 64, or 80 for H and 2B), if known.
    pub fn standard_heads(dim: usize) -> Option<usize> {
        Some(match dim {
            192 => 3,
            384 => 6,
            768 => 12,
            1024 => 16,
            1280 => 16,
            2560 => 32,
            _ => return None,
        })
    }

    /// Checks internal consistency (head split, grid) with messages naming the field.
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(
            self.heads > 0 && self.dim.is_multiple_of(self.heads),
            "heads = {} does not divide dim = {}: choose a divisor of {}",
            self.heads,
            self.dim,
            self.dim
        );
        anyhow::ensure!(
            self.patch_size > 0 && self.depth > 0,
            "patch_size and depth must be > 0"
        );
        anyhow::ensure!(
            self.grid[0] > 0 && self.grid[1] > 0,
            "positional grid must be non-empty"
        );
        Ok(())
    }

    /// Number of trainable parameters (positional embedding excluded: it is a fixed buffer).
    pub fn param_count(&self) -> usize {
        let (d, h, p) = (self.dim, self.mlp_hidden, self.patch_size);
        let ln = 2 * d;
        let block = 2 * ln
            + (3 * d * d + 3 * d)
            + (d * d + d)
            + (h * d + h)
            + (d * h + d)
            + if self.layer_scale { 2 * d } else { 0 };
        d * self.in_chans * p * p
            + d
            + d
            + if self.embed_norm { ln } else { 0 }
            + self.depth * block
            + if self.final_norm { ln } else { 0 }
    }
}

/// Pooling of a token sequence into one vector (method.md §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// Token 0.
    Cls,
    /// Mean of the patch tokens (CLS excluded).
    Mean,
    /// `[CLS ‖ mean]`.
    ClsMean,
}

/// Pools `[B, 1+N, D]` tokens to `[B, D]` (or `[B, 2D]` for [`Pool::ClsMean`]).
pub fn pool(tokens: Tensor<3>, how: Pool) -> Tensor<2> {
    let [b, n, d] = tokens.dims();
    let cls = || tokens.clone().narrow(1, 0, 1).reshape([b, d]);
    let mean = || {
        tokens
            .clone()
            .narrow(1, 1, n - 1)
            .mean_dim(1)
            .reshape([b, d])
    };
    match how {
        Pool::Cls => cls(),
        Pool::Mean => mean(),
        Pool::ClsMean => Tensor::cat(vec![cls(), mean()], 1),
    }
}

/// What a forward pass should return.
#[derive(Clone, Debug, Default)]
pub struct Taps {
    /// 0-indexed blocks whose raw residual-stream outputs are returned (sorted, unique).
    pub blocks: Vec<usize>,
    /// Also return the encoder output (after the final norm when the model has one).
    pub final_output: bool,
}

/// Outputs of [`Vit::forward`]: `[B, 1+N, D]` tokens per requested block, and the final output.
pub struct VitOutput {
    pub blocks: Vec<(usize, Tensor<3>)>,
    pub final_output: Option<Tensor<3>>,
}

impl VitOutput {
    /// The tokens of block `block`, or the final output for `None`, if the forward returned it.
    pub fn tap(&self, block: Option<usize>) -> Option<Tensor<3>> {
        match block {
            Some(i) => self
                .blocks
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, t)| t.clone()),
            None => self.final_output.clone(),
        }
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub heads: usize,
}

impl Attention {
    /// softmax(QKᵀ/√d_h)V with one fused qkv projection split as (3, heads, head_dim).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let hd = d / self.heads;
        let qkv = token_linear(&self.qkv, x)
            .reshape([b, n, 3, self.heads, hd])
            .permute([2, 0, 3, 1, 4]);
        let part = |i| qkv.clone().narrow(0, i, 1).reshape([b, self.heads, n, hd]);
        let (q, k, v) = (part(0), part(1), part(2));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt());
        let out = activation::softmax(scores, 3).matmul(v);
        token_linear(&self.proj, out.swap_dims(1, 2).reshape([b, n, d]))
    }
}

/// A linear layer over the tokens of `[B, N, D]`, run on the folded `[B·N, D]` rows. Burn's
/// generic `linear` may keep the batch dim and broadcast the weight; its backward then forms
/// one weight gradient per image (`[B, D, D_out]`, 144 MiB for 256 local views of ViT-Ti) and
/// sums them, which is slow on CPUs and over lavapipe's buffer limit. Folding makes the
/// weight gradient a single `[D, B·N] @ [B·N, D_out]` matmul.
pub fn token_linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let y = layer.forward(x.reshape([b * n, d]));
    let [_, out] = y.dims();
    y.reshape([b, n, out])
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        token_linear(&self.fc2, activation::gelu(token_linear(&self.fc1, x)))
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub ls1: Option<Param<Tensor<1>>>,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub ls2: Option<Param<Tensor<1>>>,
    pub post_norm: bool,
}

fn scale(x: Tensor<3>, ls: &Option<Param<Tensor<1>>>) -> Tensor<3> {
    match ls {
        Some(g) => x * g.val().unsqueeze::<3>(),
        None => x,
    }
}

impl Block {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if self.post_norm {
            let x = self.norm1.forward(x.clone() + self.attn.forward(x));
            self.norm2.forward(x.clone() + self.mlp.forward(x))
        } else {
            let x = x.clone() + scale(self.attn.forward(self.norm1.forward(x)), &self.ls1);
            x.clone() + scale(self.mlp.forward(self.norm2.forward(x)), &self.ls2)
        }
    }
}

/// A ViT encoder. Parameter names follow the kappamodules layout of method.md §6.1.
#[derive(Module, Debug)]
pub struct Vit {
    /// Patch-embedding conv weight `[D, C, P, P]` and bias `[D]`.
    pub patch_weight: Param<Tensor<4>>,
    pub patch_bias: Param<Tensor<1>>,
    /// Fixed positional embedding `[1, H', W', D]` (not trained).
    pub pos_embed: Param<Tensor<4>>,
    pub cls_token: Param<Tensor<3>>,
    pub embed_norm: Option<LayerNorm>,
    pub blocks: Vec<Block>,
    pub norm: Option<LayerNorm>,
    pub patch_size: usize,
    /// Resize convention of `pos_embed` for other grids (method.md §1.2).
    #[module(skip)]
    pub pos_interp: PosInterp,
}

impl Vit {
    /// Runs the encoder on normalised images `[B, C, H, W]` (H, W multiples of the patch size).
    pub fn forward(&self, images: Tensor<4>, taps: &Taps) -> VitOutput {
        let mut x = self.embed(images);
        let last = if taps.final_output {
            self.blocks.len()
        } else {
            taps.blocks.iter().max().map_or(0, |m| m + 1)
        };
        let mut outputs = Vec::new();
        for (i, block) in self.blocks.iter().enumerate().take(last) {
            x = block.forward(x);
            if taps.blocks.contains(&i) {
                outputs.push((i, x.clone()));
            }
        }
        let final_output = taps.final_output.then(|| match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        });
        VitOutput {
            blocks: outputs,
            final_output,
        }
    }

    /// Patch embedding + positional embedding + CLS token (+ embed_norm), `[B, 1+N, D]`.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        self.with_cls(self.embed_patches(images))
    }

    /// Patch embedding + positional embedding, no CLS token: `[B, N, D]` in row-major patch order.
    pub fn embed_patches(&self, images: Tensor<4>) -> Tensor<3> {
        let p = self.patch_size;
        let options = ConvOptions::new([p, p], [0, 0], [1, 1], 1);
        let x = conv2d(
            images,
            self.patch_weight.val(),
            Some(self.patch_bias.val()),
            options,
        );
        let [b, d, h, w] = x.dims();
        let x = x.permute([0, 2, 3, 1]) + self.pos_embed_for(h, w);
        x.reshape([b, h * w, d])
    }

    /// Prepends the CLS token to patch tokens `[B, n, D]` (+ embed_norm): `[B, 1+n, D]`.
    pub fn with_cls(&self, patches: Tensor<3>) -> Tensor<3> {
        let [b, _, d] = patches.dims();
        let cls = self.cls_token.val().expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, patches], 1);
        match &self.embed_norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    /// Runs every block and the final norm (if any) on a token sequence `[B, T, D]` that
    /// [`Vit::with_cls`] built (MAE runs it on the visible patches only).
    pub fn forward_tokens(&self, tokens: Tensor<3>) -> Tensor<3> {
        let x = self.blocks.iter().fold(tokens, |x, block| block.forward(x));
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    /// The positional embedding for an `h × w` patch grid: the stored one, or its resize with
    /// `self.pos_interp` (PyTorch-exact, either convention) computed as two small matmuls.
    pub fn pos_embed_for(&self, h: usize, w: usize) -> Tensor<4> {
        let pos = self.pos_embed.val();
        let [_, gh, gw, d] = pos.dims();
        if (gh, gw) == (h, w) {
            return pos;
        }
        let device = pos.device();
        let matrix = |n_in, n_out| {
            let m: Vec<f32> = pos_embed::resize_matrix(self.pos_interp, n_in, n_out)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            Tensor::<2>::from_data(TensorData::new(m, [n_out, n_in]), &device)
        };
        let grid = pos.reshape([gh, gw, d]).permute([2, 0, 1]); // [D, gh, gw]
        let rows = matrix(gh, h).unsqueeze::<3>().matmul(grid); // [D, h, gw]
        let both = rows.matmul(matrix(gw, w).transpose().unsqueeze::<3>()); // [D, h, w]
        both.permute([1, 2, 0]).reshape([1, h, w, d])
    }

    pub fn dim(&self) -> usize {
        self.cls_token.dims()[2]
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }
}

fn tensor<const N: usize>(t: &HostTensor, device: &Device) -> Tensor<N> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

pub(crate) fn param<const N: usize>(
    map: &TensorMap,
    key: &str,
    device: &Device,
) -> Result<Param<Tensor<N>>> {
    let t = map
        .get(key)
        .with_context(|| format!("missing tensor `{key}`"))?;
    Ok(Param::from_tensor(tensor(t, device)))
}

pub(crate) fn linear(map: &TensorMap, prefix: &str, device: &Device) -> Result<Linear> {
    let w = map
        .get(&format!("{prefix}.weight"))
        .with_context(|| format!("missing `{prefix}.weight`"))?;
    let mut l = LinearConfig::new(w.shape[1], w.shape[0]).init(device);
    l.weight = Param::from_tensor(tensor(&w.transposed_2d(), device));
    l.bias = Some(param(map, &format!("{prefix}.bias"), device)?);
    Ok(l)
}

pub(crate) fn layer_norm(map: &TensorMap, prefix: &str, device: &Device) -> Result<LayerNorm> {
    let w = map
        .get(&format!("{prefix}.weight"))
        .with_context(|| format!("missing `{prefix}.weight`"))?;
    let mut ln = LayerNormConfig::new(w.shape[0])
        .with_epsilon(LN_EPS)
        .init(device);
    ln.gamma = param(map, &format!("{prefix}.weight"), device)?;
    ln.beta = Some(param(map, &format!("{prefix}.bias"), device)?);
    Ok(ln)
}

impl Vit {
    /// Builds the model from canonical (§6.1) tensors already validated against `cfg`.
    pub fn from_tensors(cfg: &VitConfig, map: &TensorMap, device: &Device) -> Result<Self> {
        let opt_ln = |on: bool, p: &str| -> Result<Option<LayerNorm>> {
            if on {
                layer_norm(map, p, device).map(Some)
            } else {
                Ok(None)
            }
        };
        let post_norm = cfg.block_style == BlockStyle::PostNorm;
        let blocks = (0..cfg.depth)
            .map(|i| {
                let p = format!("blocks.{i}");
                Block::from_tensors(map, &p, cfg.heads, cfg.layer_scale, post_norm, device)
            })
            .collect::<Result<Vec<_>>>()?;
        let pos = param::<4>(map, "pos_embed.embed", device)?.set_require_grad(false);
        Ok(Self {
            patch_weight: param(map, "patch_embed.proj.weight", device)?,
            patch_bias: param(map, "patch_embed.proj.bias", device)?,
            pos_embed: pos,
            cls_token: param(map, "cls_tokens.tokens", device)?,
            embed_norm: opt_ln(cfg.embed_norm, "embed_norm")?,
            blocks,
            norm: opt_ln(cfg.final_norm, "norm")?,
            patch_size: cfg.patch_size,
            pos_interp: cfg.pos_interp,
        })
    }

    /// Reads every parameter back to host tensors under canonical (§6.1) names.
    pub fn to_tensors(&self) -> Result<TensorMap> {
        let mut map = TensorMap::new();
        let mut put = |k: &str, t: HostTensor| {
            map.insert(k.to_string(), t);
        };
        put("patch_embed.proj.weight", host(self.patch_weight.val())?);
        put("patch_embed.proj.bias", host(self.patch_bias.val())?);
        put("pos_embed.embed", host(self.pos_embed.val())?);
        put("cls_tokens.tokens", host(self.cls_token.val())?);
        if let Some(n) = &self.embed_norm {
            put_ln(&mut map, "embed_norm", n)?;
        }
        for (i, b) in self.blocks.iter().enumerate() {
            b.put_tensors(&mut map, &format!("blocks.{i}"))?;
        }
        if let Some(n) = &self.norm {
            put_ln(&mut map, "norm", n)?;
        }
        Ok(map)
    }
}

/// Writes a LayerNorm's `weight` and `bias` under `prefix`.
pub(crate) fn put_ln(map: &mut TensorMap, prefix: &str, ln: &LayerNorm) -> Result<()> {
    map.insert(format!("{prefix}.weight"), host(ln.gamma.val())?);
    if let Some(b) = &ln.beta {
        map.insert(format!("{prefix}.bias"), host(b.val())?);
    }
    Ok(())
}

/// Writes a Linear's weight (PyTorch `[out, in]` layout) and bias under `prefix`.
pub(crate) fn put_linear(map: &mut TensorMap, prefix: &str, l: &Linear) -> Result<()> {
    map.insert(
        format!("{prefix}.weight"),
        host(l.weight.val())?.transposed_2d(),
    );
    if let Some(bias) = &l.bias {
        map.insert(format!("{prefix}.bias"), host(bias.val())?);
    }
    Ok(())
}

impl Block {
    /// Builds one block from the tensors under `prefix` (`norm1`, `attn.qkv`, `attn.proj`,
    /// `norm2`, `mlp.fc1`, `mlp.fc2`, and `ls1.gamma`/`ls2.gamma` with LayerScale).
    pub fn from_tensors(
        map: &TensorMap,
        prefix: &str,
        heads: usize,
        layer_scale: bool,
        post_norm: bool,
        device: &Device,
    ) -> Result<Self> {
        let p = prefix;
        let ls = |n: &str| -> Result<Option<Param<Tensor<1>>>> {
            if layer_scale {
                param(map, &format!("{p}.{n}.gamma"), device).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Block {
            norm1: layer_norm(map, &format!("{p}.norm1"), device)?,
            attn: Attention {
                qkv: linear(map, &format!("{p}.attn.qkv"), device)?,
                proj: linear(map, &format!("{p}.attn.proj"), device)?,
                heads,
            },
            ls1: ls("ls1")?,
            norm2: layer_norm(map, &format!("{p}.norm2"), device)?,
            mlp: Mlp {
                fc1: linear(map, &format!("{p}.mlp.fc1"), device)?,
                fc2: linear(map, &format!("{p}.mlp.fc2"), device)?,
            },
            ls2: ls("ls2")?,
            post_norm,
        })
    }

    /// Writes this block's tensors under `prefix` in the names [`Block::from_tensors`] reads.
    pub fn put_tensors(&self, map: &mut TensorMap, prefix: &str) -> Result<()> {
        put_ln(map, &format!("{prefix}.norm1"), &self.norm1)?;
        put_ln(map, &format!("{prefix}.norm2"), &self.norm2)?;
        for (name, l) in [
            ("attn.qkv", &self.attn.qkv),
            ("attn.proj", &self.attn.proj),
            ("mlp.fc1", &self.mlp.fc1),
            ("mlp.fc2", &self.mlp.fc2),
        ] {
            put_linear(map, &format!("{prefix}.{name}"), l)?;
        }
        for (name, ls) in [("ls1", &self.ls1), ("ls2", &self.ls2)] {
            if let Some(g) = ls {
                map.insert(format!("{prefix}.{name}.gamma"), host(g.val())?);
            }
        }
        Ok(())
    }
}

impl VitConfig {
    /// Every canonical (§6.1) tensor name of this architecture with its shape.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, h, p, c) = (self.dim, self.mlp_hidden, self.patch_size, self.in_chans);
        let mut v: Vec<(String, Vec<usize>)> = vec![
            ("patch_embed.proj.weight".into(), vec![d, c, p, p]),
            ("patch_embed.proj.bias".into(), vec![d]),
            (
                "pos_embed.embed".into(),
                vec![1, self.grid[0], self.grid[1], d],
            ),
            ("cls_tokens.tokens".into(), vec![1, 1, d]),
        ];
        let ln = |v: &mut Vec<(String, Vec<usize>)>, p: &str| {
            v.push((format!("{p}.weight"), vec![d]));
            v.push((format!("{p}.bias"), vec![d]));
        };
        if self.embed_norm {
            ln(&mut v, "embed_norm");
        }
        for i in 0..self.depth {
            let b = format!("blocks.{i}");
            ln(&mut v, &format!("{b}.norm1"));
            v.push((format!("{b}.attn.qkv.weight"), vec![3 * d, d]));
            v.push((format!("{b}.attn.qkv.bias"), vec![3 * d]));
            v.push((format!("{b}.attn.proj.weight"), vec![d, d]));
            v.push((format!("{b}.attn.proj.bias"), vec![d]));
            ln(&mut v, &format!("{b}.norm2"));
            v.push((format!("{b}.mlp.fc1.weight"), vec![h, d]));
            v.push((format!("{b}.mlp.fc1.bias"), vec![h]));
            v.push((format!("{b}.mlp.fc2.weight"), vec![d, h]));
            v.push((format!("{b}.mlp.fc2.bias"), vec![d]));
            if self.layer_scale {
                v.push((format!("{b}.ls1.gamma"), vec![d]));
                v.push((format!("{b}.ls2.gamma"), vec![d]));
            }
        }
        if self.final_norm {
            ln(&mut v, "norm");
        }
        v
    }

    /// Randomly initialised canonical tensors (N(0, 0.02) weights, unit norms, zero biases,
    /// sin-cos positions), deterministic in `seed`.
    pub fn random_tensors(&self, seed: u64) -> TensorMap {
        let mut rng = crate::rng::Rng::new(seed);
        let mut map = TensorMap::new();
        for (name, shape) in self.expected_shapes() {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name == "pos_embed.embed" {
                pos_embed::sincos_2d(self.grid[0], self.grid[1], self.dim)
            } else if name.ends_with("norm1.weight")
                || name.ends_with("norm2.weight")
                || name.contains("norm.weight")
            {
                vec![1.0; n]
            } else if name.ends_with(".gamma") {
                vec![0.1; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| (0.02 * rng.normal()) as f32).collect()
            };
            map.insert(name, HostTensor { shape, data });
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tensor<3> {
        // B=1, N=1+2 tokens, D=2: cls=[1,2], patches [3,4] and [5,8]
        let d = TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 8.0], [1, 3, 2]);
        Tensor::from_data(d, &Device::flex())
    }

    #[test]
    fn pooling_is_cls_mean_and_concat() {
        let v = |p| host(pool(tokens(), p)).unwrap().data;
        assert_eq!(v(Pool::Cls), vec![1.0, 2.0]);
        assert_eq!(v(Pool::Mean), vec![4.0, 6.0]);
        assert_eq!(v(Pool::ClsMean), vec![1.0, 2.0, 4.0, 6.0]);
    }

    #[test]
    fn param_count_matches_expected_shapes() {
        for name in ["debug", "tiny", "small", "base"] {
            let c = VitConfig::preset(name, 224).unwrap();
            let n: usize = c
                .expected_shapes()
                .iter()
                .filter(|(k, _)| k != "pos_embed.embed")
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(c.param_count(), n, "{name}");
        }
        // timm's vit_base_patch16_224 has 86,567,656 parameters, of which the classifier head
        // (768·1000 + 1000) and pos_embed (197·768) are not encoder parameters here.
        let b = VitConfig::preset("base", 224).unwrap().param_count();
        assert_eq!(b, 86_567_656 - 769_000 - 151_296);
    }

    #[test]
    fn pos_embed_for_matches_pytorch_in_both_conventions() {
        // the device path (two f32 matmuls) against F.interpolate / timm on the same grid
        let f = pos_embed::tests::pytorch_fixture();
        let grid = &f["grid"];
        let [h, w, d] = grid.shape[..] else {
            panic!("grid must be [h, w, d]")
        };
        let cfg = VitConfig::prenorm(4, d, 1, 2, 4 * h);
        let mut t = cfg.random_tensors(1);
        let pos = HostTensor::new(vec![1, h, w, d], grid.data.clone()).unwrap();
        t.insert("pos_embed.embed".into(), pos);
        let mut vit = Vit::from_tensors(&cfg, &t, &Device::flex()).unwrap();
        let mut worst = 0.0f32;
        for (key, interp, (h2, w2), want) in pos_embed::tests::cases(&f) {
            vit.pos_interp = interp;
            let got = host(vit.pos_embed_for(h2, w2)).unwrap();
            let got = got.reshaped(vec![h2, w2, d]).unwrap();
            let diff = got.max_abs_diff(&want);
            assert!(diff <= 1e-5, "{key}: max abs diff {diff} to PyTorch");
            worst = worst.max(diff);
        }
        eprintln!("Vit::pos_embed_for vs PyTorch: max abs diff {worst:e}");
    }

    #[test]
    fn interpolated_pos_embed_keeps_constant_grids_constant() {
        let cfg = VitConfig::prenorm(4, 8, 1, 2, 16);
        let mut t = cfg.random_tensors(1);
        let pos = t.get_mut("pos_embed.embed").unwrap();
        pos.data
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i % 8) as f32);
        let vit = Vit::from_tensors(&cfg, &t, &Device::flex()).unwrap();
        let out = host(vit.pos_embed_for(6, 3)).unwrap();
        assert_eq!(out.shape, vec![1, 6, 3, 8]);
        for (i, v) in out.data.iter().enumerate() {
            assert!((v - (i % 8) as f32).abs() < 1e-5, "{i}: {v}");
        }
    }
}
