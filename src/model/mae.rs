//! Masked autoencoder pre-training (He et al. 2022, facebookresearch/mae `models_mae.py`):
//! per-sample random masking, the ViT encoder on visible patches, the decoder and the pixel loss.

use super::pos_embed;
use super::vit::{self, Block, BlockStyle, Vit, VitConfig, token_linear};
use crate::checkpoint::formats;
use crate::host::{HostTensor, TensorMap, host};
use crate::rng::Rng;
use anyhow::{Context, Result, bail, ensure};
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Architecture and loss settings of an MAE: the encoder plus MAE's decoder and masking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaeConfig {
    /// The encoder (pre-norm, final norm, no embed_norm: the MAE layout).
    pub encoder: VitConfig,
    /// Decoder width `Dd` (a multiple of 4 for its 2-D sin-cos positions).
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
    /// Fraction of patches removed per sample (MAE: 0.75).
    #[serde(default = "default_mask_ratio")]
    pub mask_ratio: f64,
    /// Normalise each target patch by its own mean and std before the MSE (MAE's flag).
    #[serde(default)]
    pub norm_pix_loss: bool,
}

/// Sub-stream key of the decoder's initial weights (`b"MAE"`).
const DECODER_INIT: u64 = 0x4D4145;
/// Sub-stream key of the encoder's xavier-uniform matrices (`b"XAV"`).
const ENCODER_INIT: u64 = 0x584156;

fn default_mask_ratio() -> f64 {
    0.75
}

impl MaeConfig {
    /// Checks the encoder, the decoder head split and the mask ratio, naming the field.
    pub fn validate(&self) -> Result<()> {
        let e = &self.encoder;
        e.validate().context("encoder")?;
        ensure!(
            e.block_style == BlockStyle::PreNorm && e.final_norm && !e.embed_norm,
            "MAE needs a pre-norm encoder with a final norm and no embed_norm"
        );
        ensure!(
            self.decoder_heads > 0 && self.decoder_dim.is_multiple_of(self.decoder_heads),
            "decoder_heads = {} does not divide decoder_dim = {}",
            self.decoder_heads,
            self.decoder_dim
        );
        ensure!(
            self.decoder_dim.is_multiple_of(4) && self.decoder_depth > 0,
            "decoder_dim must be a multiple of 4 (2-D sin-cos) and decoder_depth > 0"
        );
        ensure!(
            (0.0..1.0).contains(&self.mask_ratio) && self.len_keep() > 0,
            "mask_ratio = {} must be in [0, 1) and keep at least one of {} patches",
            self.mask_ratio,
            self.num_patches()
        );
        Ok(())
    }

    /// Patches per image at the configured grid, `L`.
    pub fn num_patches(&self) -> usize {
        self.encoder.grid[0] * self.encoder.grid[1]
    }

    /// Patches kept per image: `⌊L·(1 − mask_ratio)⌋`, as MAE's `int(L * (1 - mask_ratio))`.
    pub fn len_keep(&self) -> usize {
        len_keep(self.num_patches(), self.mask_ratio)
    }

    /// Values per patch target: `p²·C`.
    pub fn patch_dim(&self) -> usize {
        self.encoder.patch_size.pow(2) * self.encoder.in_chans
    }

    /// The decoder's tensor names (MAE state-dict names) and shapes (PyTorch layout).
    pub fn decoder_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, dd, l) = (self.encoder.dim, self.decoder_dim, self.num_patches());
        let mut v: Vec<(String, Vec<usize>)> = vec![
            ("decoder_embed.weight".into(), vec![dd, d]),
            ("decoder_embed.bias".into(), vec![dd]),
            ("mask_token".into(), vec![1, 1, dd]),
            ("decoder_pos_embed".into(), vec![1, 1 + l, dd]),
            ("decoder_norm.weight".into(), vec![dd]),
            ("decoder_norm.bias".into(), vec![dd]),
            ("decoder_pred.weight".into(), vec![self.patch_dim(), dd]),
            ("decoder_pred.bias".into(), vec![self.patch_dim()]),
        ];
        for i in 0..self.decoder_depth {
            let b = format!("decoder_blocks.{i}");
            for (name, shape) in block_shapes(dd) {
                v.push((format!("{b}.{name}"), shape));
            }
        }
        v
    }

    /// Fresh tensors with MAE's init, deterministic in `seed`: the encoder's
    /// [`VitConfig::random_tensors`] (N(0, 0.02) CLS token, sin-cos positions, unit norms, zero
    /// biases) with every Linear and the patch projection (as a `[D, C·p·p]` matrix) redrawn
    /// xavier-uniform; for the decoder xavier-uniform Linears, zero biases, unit norms,
    /// N(0, 0.02) mask token and fixed sin-cos positions with a zero CLS row.
    pub fn random_tensors(&self, seed: u64) -> Result<TensorMap> {
        let mut map = self.encoder.random_tensors(seed);
        let mut rng = Rng::keyed(&[seed, ENCODER_INIT]);
        for (name, shape) in self.encoder.expected_shapes() {
            let is_matrix = name.ends_with(".weight") && shape.len() >= 2;
            if is_matrix {
                let fan_in: usize = shape[1..].iter().product();
                map.insert(name, xavier_uniform(shape[0], fan_in, &shape, &mut rng)?);
            }
        }
        let mut rng = Rng::keyed(&[seed, DECODER_INIT]);
        let [gh, gw] = self.encoder.grid;
        for (name, shape) in self.decoder_shapes() {
            let n: usize = shape.iter().product();
            let data = if name == "decoder_pos_embed" {
                let mut pos = vec![0.0; self.decoder_dim];
                pos.extend(pos_embed::sincos_2d(gh, gw, self.decoder_dim));
                pos
            } else if name == "mask_token" {
                (0..n).map(|_| (0.02 * rng.normal()) as f32).collect()
            } else if name.contains("norm") && name.ends_with(".weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                map.insert(name, xavier_uniform(shape[0], shape[1], &shape, &mut rng)?);
                continue;
            };
            map.insert(name, HostTensor::new(shape, data)?);
        }
        Ok(map)
    }
}

/// U(−b, b) with b = √(6 / (fan_in + fan_out)) (`torch.nn.init.xavier_uniform_`).
fn xavier_uniform(
    fan_out: usize,
    fan_in: usize,
    shape: &[usize],
    rng: &mut Rng,
) -> Result<HostTensor> {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let n = fan_out * fan_in;
    let data = (0..n).map(|_| rng.range(-bound, bound) as f32).collect();
    HostTensor::new(shape.to_vec(), data)
}

/// Tensor names and shapes of one pre-norm block of width `d` with a 4× MLP.
fn block_shapes(d: usize) -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("norm1.weight", vec![d]),
        ("norm1.bias", vec![d]),
        ("attn.qkv.weight", vec![3 * d, d]),
        ("attn.qkv.bias", vec![3 * d]),
        ("attn.proj.weight", vec![d, d]),
        ("attn.proj.bias", vec![d]),
        ("norm2.weight", vec![d]),
        ("norm2.bias", vec![d]),
        ("mlp.fc1.weight", vec![4 * d, d]),
        ("mlp.fc1.bias", vec![4 * d]),
        ("mlp.fc2.weight", vec![d, 4 * d]),
        ("mlp.fc2.bias", vec![d]),
    ]
}

/// `⌊l·(1 − ratio)⌋` in f64, as Python's `int(L * (1 - mask_ratio))`.
pub fn len_keep(l: usize, ratio: f64) -> usize {
    (l as f64 * (1.0 - ratio)) as usize
}

/// One batch's masking: per sample the patch order by ascending noise (`ids_shuffle`, the first
/// `len_keep` kept), its inverse (`ids_restore`) and the binary mask (0 kept, 1 removed).
#[derive(Clone, Debug, PartialEq)]
pub struct Masking {
    pub len_keep: usize,
    /// `[n][l]`: patch indices in shuffled order.
    pub ids_shuffle: Vec<Vec<usize>>,
    /// `[n][l]`: the position of each patch in the shuffled order (`argsort(ids_shuffle)`).
    pub ids_restore: Vec<Vec<usize>>,
    /// `[n, l]` in the original patch order: 0 = kept, 1 = removed.
    pub mask: HostTensor,
}

impl Masking {
    /// Masking from explicit noise `[n, l]`: `ids_shuffle = argsort(noise)` (ties by index).
    pub fn from_noise(noise: &HostTensor, ratio: f64) -> Result<Self> {
        let [n, l] = noise.shape[..] else {
            bail!("noise has shape {:?}, expected [n, l]", noise.shape)
        };
        let shuffle = (0..n)
            .map(|i| {
                let row = &noise.data[i * l..(i + 1) * l];
                let mut ids: Vec<usize> = (0..l).collect();
                ids.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
                ids
            })
            .collect();
        Self::from_shuffle(shuffle, len_keep(l, ratio))
    }

    /// Masking from explicit per-sample permutations; `len_keep` of each are kept.
    pub fn from_shuffle(ids_shuffle: Vec<Vec<usize>>, len_keep: usize) -> Result<Self> {
        let n = ids_shuffle.len();
        let l = ids_shuffle.first().map_or(0, Vec::len);
        ensure!(
            n > 0 && l > 0,
            "masking needs at least one sample and one patch"
        );
        ensure!(len_keep <= l, "len_keep = {len_keep} exceeds {l} patches");
        let mut ids_restore = Vec::with_capacity(n);
        let mut mask = Vec::with_capacity(n * l);
        for (i, row) in ids_shuffle.iter().enumerate() {
            ensure!(
                row.len() == l,
                "sample {i}: {} patch ids, expected {l}",
                row.len()
            );
            let mut restore = vec![usize::MAX; l];
            for (pos, &id) in row.iter().enumerate() {
                ensure!(
                    id < l && restore[id] == usize::MAX,
                    "sample {i}: ids_shuffle is not a permutation of 0..{l}"
                );
                restore[id] = pos;
            }
            mask.extend(
                restore
                    .iter()
                    .map(|&r| if r < len_keep { 0.0 } else { 1.0 }),
            );
            ids_restore.push(restore);
        }
        let mask = HostTensor::new(vec![n, l], mask)?;
        Ok(Self {
            len_keep,
            ids_shuffle,
            ids_restore,
            mask,
        })
    }

    /// `(n, l)`.
    pub fn dims(&self) -> (usize, usize) {
        (
            self.ids_shuffle.len(),
            self.ids_restore.first().map_or(0, Vec::len),
        )
    }

    /// Index tensor `[n, cols, width]` of the first `cols` ids of each row, repeated along
    /// the last axis (a `gather` along dim 1).
    fn gather_index(
        rows: &[Vec<usize>],
        cols: usize,
        width: usize,
        dev: &Device,
    ) -> Tensor<3, Int> {
        let n = rows.len();
        let ids: Vec<i64> = rows
            .iter()
            .flat_map(|r| r[..cols].iter().map(|&v| v as i64))
            .collect();
        Tensor::<3, Int>::from_data(TensorData::new(ids, [n, cols, 1]), dev).repeat_dim(2, width)
    }
}

/// Per-sample random masking with uniform noise from `rng` (MAE's `random_masking`).
pub fn random_masking(n: usize, l: usize, ratio: f64, rng: &mut Rng) -> Result<Masking> {
    let noise: Vec<f32> = (0..n * l).map(|_| rng.uniform() as f32).collect();
    Masking::from_noise(&HostTensor::new(vec![n, l], noise)?, ratio)
}

/// Images `[n, C, H, W]` → patches `[n, L, p²·C]`, each patch flattened as (row, col, channel)
/// (MAE's `nchpwq->nhwpqc`).
pub fn patchify(images: Tensor<4>, p: usize) -> Result<Tensor<3>> {
    let [n, c, h, w] = images.dims();
    ensure!(
        p > 0 && h.is_multiple_of(p) && w.is_multiple_of(p),
        "image {h}×{w} is not a multiple of the patch size {p}"
    );
    let (gh, gw) = (h / p, w / p);
    let x: Tensor<6> = images.reshape([n, c, gh, p, gw, p]);
    Ok(x.permute([0, 2, 4, 3, 5, 1])
        .reshape([n, gh * gw, p * p * c]))
}

/// MAE's loss: per-patch MSE between `pred` and `target` `[n, L, P]` (the target optionally
/// normalised per patch, `(t − mean)/√(var + 1e-6)` with unbiased var), averaged over the
/// removed patches only: `Σ(loss·mask) / Σ mask`.
pub fn masked_mse(
    pred: Tensor<3>,
    target: Tensor<3>,
    mask: Tensor<2>,
    norm_pix: bool,
) -> Tensor<1> {
    let [n, l, _] = target.dims();
    let target = if norm_pix {
        let mean = target.clone().mean_dim(2);
        let var = target.clone().var(2);
        (target - mean) / (var + 1e-6).sqrt()
    } else {
        target
    };
    let per_patch: Tensor<2> = (pred - target).powi_scalar(2).mean_dim(2).reshape([n, l]);
    (per_patch * mask.clone()).sum() / mask.sum()
}

/// A masked autoencoder: the encoder in canonical names, the decoder in MAE's names.
#[derive(Module, Debug)]
pub struct Mae {
    pub encoder: Vit,
    pub decoder_embed: Linear,
    pub mask_token: Param<Tensor<3>>,
    /// Fixed `[1, 1+L, Dd]` sin-cos positions, row 0 for the CLS token (not trained).
    pub decoder_pos_embed: Param<Tensor<3>>,
    pub decoder_blocks: Vec<Block>,
    pub decoder_norm: LayerNorm,
    pub decoder_pred: Linear,
    pub norm_pix_loss: bool,
}

/// What [`Mae::forward`] computes.
pub struct MaeOutput {
    /// Encoder output on CLS + kept patches `[n, 1+len_keep, D]` (after the final norm).
    pub latent: Tensor<3>,
    /// Predicted pixels of every patch `[n, L, p²·C]` (CLS dropped).
    pub pred: Tensor<3>,
    /// `[n, L]`, 0 = kept, 1 = removed.
    pub mask: Tensor<2>,
    /// The masked loss, `[1]`.
    pub loss: Tensor<1>,
}

impl Mae {
    /// A freshly initialised model ([`MaeConfig::random_tensors`]).
    pub fn init(cfg: &MaeConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::from_tensors(cfg, &cfg.random_tensors(seed)?, device)
    }

    /// Builds the model from canonical encoder tensors plus MAE-named decoder tensors.
    pub fn from_tensors(cfg: &MaeConfig, map: &TensorMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let mut want = cfg.encoder.expected_shapes();
        want.extend(cfg.decoder_shapes());
        for (name, shape) in &want {
            let t = map
                .get(name)
                .with_context(|| format!("missing tensor `{name}`"))?;
            ensure!(
                &t.shape == shape,
                "`{name}` has shape {:?}, expected {shape:?}",
                t.shape
            );
        }
        let decoder_blocks = (0..cfg.decoder_depth)
            .map(|i| {
                let p = format!("decoder_blocks.{i}");
                Block::from_tensors(map, &p, cfg.decoder_heads, false, false, device)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            encoder: Vit::from_tensors(&cfg.encoder, map, device)?,
            decoder_embed: vit::linear(map, "decoder_embed", device)?,
            mask_token: vit::param(map, "mask_token", device)?,
            decoder_pos_embed: vit::param(map, "decoder_pos_embed", device)?
                .set_require_grad(false),
            decoder_blocks,
            decoder_norm: vit::layer_norm(map, "decoder_norm", device)?,
            decoder_pred: vit::linear(map, "decoder_pred", device)?,
            norm_pix_loss: cfg.norm_pix_loss,
        })
    }

    /// Reads every tensor back to the host: canonical encoder names + MAE decoder names.
    pub fn to_tensors(&self) -> Result<TensorMap> {
        let mut map = self.encoder.to_tensors()?;
        vit::put_linear(&mut map, "decoder_embed", &self.decoder_embed)?;
        map.insert("mask_token".into(), host(self.mask_token.val())?);
        map.insert(
            "decoder_pos_embed".into(),
            host(self.decoder_pos_embed.val())?,
        );
        for (i, b) in self.decoder_blocks.iter().enumerate() {
            b.put_tensors(&mut map, &format!("decoder_blocks.{i}"))?;
        }
        vit::put_ln(&mut map, "decoder_norm", &self.decoder_norm)?;
        vit::put_linear(&mut map, "decoder_pred", &self.decoder_pred)?;
        Ok(map)
    }

    /// Encoder on the kept patches: patch + position embedding, gather the first `len_keep`
    /// of each sample's shuffle, prepend CLS, blocks, final norm → `[n, 1+len_keep, D]`.
    pub fn forward_encoder(&self, images: Tensor<4>, masking: &Masking) -> Result<Tensor<3>> {
        let x = self.encoder.embed_patches(images);
        let [n, l, d] = x.dims();
        ensure!(
            masking.dims() == (n, l),
            "masking is for {:?} (images, patches), the batch has ({n}, {l})",
            masking.dims()
        );
        let keep = Masking::gather_index(&masking.ids_shuffle, masking.len_keep, d, &x.device());
        let x = self.encoder.with_cls(x.gather(1, keep));
        Ok(self.encoder.forward_tokens(x))
    }

    /// Decoder: embed, append mask tokens, un-shuffle, add positions, blocks, norm, predict,
    /// drop CLS → `[n, L, p²·C]`.
    pub fn forward_decoder(&self, latent: Tensor<3>, masking: &Masking) -> Result<Tensor<3>> {
        let x = token_linear(&self.decoder_embed, latent);
        let [n, t, dd] = x.dims();
        let (_, l) = masking.dims();
        let pos = self.decoder_pos_embed.val();
        ensure!(
            t == masking.len_keep + 1 && pos.dims()[1] == l + 1,
            "decoder: {t} latent tokens, {l} patches and {} positions do not fit the masking",
            pos.dims()[1]
        );
        let masked = self.mask_token.val().expand([n, l - masking.len_keep, dd]);
        let patches = Tensor::cat(vec![x.clone().narrow(1, 1, t - 1), masked], 1);
        let restore = Masking::gather_index(&masking.ids_restore, l, dd, &x.device());
        let x = Tensor::cat(vec![x.narrow(1, 0, 1), patches.gather(1, restore)], 1) + pos;
        let x = self.decoder_blocks.iter().fold(x, |x, b| b.forward(x));
        let x = token_linear(&self.decoder_pred, self.decoder_norm.forward(x));
        Ok(x.narrow(1, 1, l))
    }

    /// The loss of `pred` against `images` under `mask` (see [`masked_mse`]).
    pub fn loss(&self, images: Tensor<4>, pred: Tensor<3>, mask: Tensor<2>) -> Result<Tensor<1>> {
        let target = patchify(images, self.encoder.patch_size)?;
        ensure!(
            target.dims() == pred.dims(),
            "prediction {:?} and target {:?} differ",
            pred.dims(),
            target.dims()
        );
        Ok(masked_mse(pred, target, mask, self.norm_pix_loss))
    }

    /// Encoder, decoder and loss with a given masking.
    pub fn forward(&self, images: Tensor<4>, masking: &Masking) -> Result<MaeOutput> {
        let latent = self.forward_encoder(images.clone(), masking)?;
        let pred = self.forward_decoder(latent.clone(), masking)?;
        let m = &masking.mask;
        let data = TensorData::new(m.data.clone(), m.shape.clone());
        let mask = Tensor::<2>::from_data(data, &images.device());
        let loss = self.loss(images, pred.clone(), mask.clone())?;
        Ok(MaeOutput {
            latent,
            pred,
            mask,
            loss,
        })
    }
}

/// Splits an MAE state dict (`models_mae.py` names) into the tensors [`Mae::from_tensors`]
/// reads: the encoder canonicalised (`checkpoint::formats`), the decoder keys kept as they are.
pub fn tensors_from_mae_state_dict(raw: TensorMap) -> Result<TensorMap> {
    let is_decoder = |k: &str| k.starts_with("decoder_") || k == "mask_token";
    let (decoder, encoder): (TensorMap, TensorMap) =
        raw.into_iter().partition(|(k, _)| is_decoder(k));
    let mut map = formats::canonicalize(encoder)?.tensors;
    map.extend(decoder);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MaeConfig {
        MaeConfig {
            encoder: VitConfig::prenorm(4, 16, 1, 2, 16),
            decoder_dim: 8,
            decoder_depth: 1,
            decoder_heads: 2,
            mask_ratio: 0.75,
            norm_pix_loss: true,
        }
    }

    #[test]
    fn init_round_trips_through_tensors() {
        let c = cfg();
        let t = c.random_tensors(3).unwrap();
        let m = Mae::init(&c, &Device::flex(), 3).unwrap();
        assert_eq!(m.to_tensors().unwrap(), t);
    }

    #[test]
    fn encoder_matrices_are_xavier_uniform_and_the_rest_keeps_vit_init() {
        let mut c = cfg();
        c.encoder = VitConfig::prenorm(4, 64, 2, 4, 16);
        let t = c.random_tensors(5).unwrap();
        let vit = c.encoder.random_tensors(5);
        for (name, fan_out, fan_in) in [
            ("blocks.1.attn.qkv.weight", 192, 64),
            ("blocks.0.mlp.fc2.weight", 64, 256),
            ("patch_embed.proj.weight", 64, 3 * 4 * 4),
        ] {
            let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
            let d = &t[name].data;
            let max = d.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
            let var = d.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / d.len() as f64;
            // U(-b, b): max close to b, variance b²/3 (n ≥ 12 288 draws, 5 % tolerance)
            assert!(max <= b && max > 0.99 * b, "{name}: max {max} vs bound {b}");
            assert!(
                (var / (b * b / 3.0) - 1.0).abs() < 0.05,
                "{name}: var {var}"
            );
        }
        for name in [
            "cls_tokens.tokens",
            "pos_embed.embed",
            "blocks.0.norm1.weight",
        ] {
            assert_eq!(t[name], vit[name], "{name}");
        }
    }

    #[test]
    fn config_validation_names_the_problem() {
        let mut c = cfg();
        c.decoder_heads = 3;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("decoder_heads")
        );
        let mut c = cfg();
        c.mask_ratio = 1.0;
        assert!(c.validate().unwrap_err().to_string().contains("mask_ratio"));
        let json = serde_json::to_string(&cfg()).unwrap();
        assert_eq!(serde_json::from_str::<MaeConfig>(&json).unwrap(), cfg());
    }

    #[test]
    fn masking_rejects_non_permutations() {
        assert!(Masking::from_shuffle(vec![vec![0, 0, 1]], 1).is_err());
        assert!(Masking::from_shuffle(vec![vec![0, 2, 1]], 4).is_err());
        let m = Masking::from_shuffle(vec![vec![2, 0, 1]], 1).unwrap();
        assert_eq!(m.ids_restore, vec![vec![1, 2, 0]]);
        assert_eq!(m.mask.data, vec![1.0, 1.0, 0.0]);
    }

    #[test]
    fn decoder_layout_is_checked_on_load() {
        let c = cfg();
        let mut t = c.random_tensors(1).unwrap();
        t.remove("decoder_norm.bias");
        let err = Mae::from_tensors(&c, &t, &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(err.contains("decoder_norm.bias"), "{err}");
    }
}
