//! The MAE model and loss (src/model/mae.rs) against a PyTorch MAE built after `models_mae.py`
//! (tools/make_mae_fixture.py), plus masking, loss and training properties that need no fixture.

mod common;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use mimr::host::{HostTensor, TensorMap, host};
use mimr::model::mae::{
    Mae, MaeConfig, Masking, masked_mse, patchify, random_masking, tensors_from_mae_state_dict,
};
use mimr::model::vit::VitConfig;
use mimr::rng::Rng;

/// Keys of the fixture that are inputs or outputs, not MAE weights.
const DATA_KEYS: [&str; 9] = [
    "images",
    "noise",
    "ids_restore",
    "mask",
    "latent",
    "pred",
    "target",
    "loss",
    "loss_norm_pix",
];

fn fixture() -> TensorMap {
    mimr::checkpoint::st::read(&common::fixture("mae_forward.safetensors"))
        .expect("fixture (tools/make_mae_fixture.py)")
        .tensors
}

/// The fixture's architecture: image 16, patch 4, D 32 × 2 blocks, decoder 24 × 1, 2 heads.
fn fixture_cfg(norm_pix_loss: bool) -> MaeConfig {
    MaeConfig {
        encoder: VitConfig::prenorm(4, 32, 2, 2, 16),
        decoder_dim: 24,
        decoder_depth: 1,
        decoder_heads: 2,
        mask_ratio: 0.75,
        norm_pix_loss,
    }
}

fn up<const N: usize>(t: &HostTensor, d: &Device) -> Tensor<N> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), d)
}

fn close(got: &HostTensor, want: &HostTensor, tol: f32, what: &str) -> f32 {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let d = got.max_abs_diff(want);
    assert!(d <= tol, "{what}: max abs diff {d} > {tol}");
    d
}

fn fixture_model(f: &TensorMap, norm_pix: bool, dev: &Device) -> Mae {
    let weights: TensorMap = f
        .iter()
        .filter(|(k, _)| !DATA_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let map = tensors_from_mae_state_dict(weights).expect("MAE state dict");
    Mae::from_tensors(&fixture_cfg(norm_pix), &map, dev).expect("model")
}

#[test]
fn forward_matches_pytorch_mae() {
    let f = fixture();
    let dev = Device::flex();
    let masking = Masking::from_noise(&f["noise"], 0.75).expect("masking");
    let restore: Vec<f32> = masking
        .ids_restore
        .concat()
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(restore, f["ids_restore"].data, "ids_restore");
    assert_eq!(masking.mask, f["mask"], "mask");
    let images = up::<4>(&f["images"], &dev);
    let target = host(patchify(images.clone(), 4).unwrap()).unwrap();
    close(&target, &f["target"], 0.0, "patchify");
    let mut worst = 0.0f32;
    for (norm_pix, key) in [(false, "loss"), (true, "loss_norm_pix")] {
        let mae = fixture_model(&f, norm_pix, &dev);
        let out = mae.forward(images.clone(), &masking).expect("forward");
        assert_eq!(host(out.mask).unwrap(), f["mask"], "device mask");
        worst = worst.max(close(
            &host(out.latent).unwrap(),
            &f["latent"],
            1e-5,
            "latent",
        ));
        worst = worst.max(close(&host(out.pred).unwrap(), &f["pred"], 1e-5, "pred"));
        worst = worst.max(close(&host(out.loss).unwrap(), &f[key], 1e-5, key));
    }
    eprintln!("MAE forward vs PyTorch: max abs diff {worst:e}");
}

#[test]
fn fresh_decoder_positions_are_maes_sincos() {
    let f = fixture();
    let fresh = fixture_cfg(true).random_tensors(0).unwrap();
    let key = "decoder_pos_embed";
    close(&fresh[key], &f[key], 1e-6, key);
    let enc = tensors_from_mae_state_dict(f).unwrap();
    close(
        &fresh["pos_embed.embed"],
        &enc["pos_embed.embed"],
        1e-6,
        "pos_embed",
    );
}

#[test]
fn masking_ratio_is_exact_and_unshuffle_inverts_shuffle() {
    let dev = Device::flex();
    let mut rng = Rng::new(7);
    for (n, l, ratio) in [(4, 16, 0.75), (3, 196, 0.75), (2, 49, 0.6), (5, 10, 0.0)] {
        let m = random_masking(n, l, ratio, &mut rng).unwrap();
        let keep = (l as f64 * (1.0 - ratio)) as usize;
        assert_eq!(m.len_keep, keep);
        for i in 0..n {
            let row = &m.mask.data[i * l..(i + 1) * l];
            assert_eq!(
                row.iter().sum::<f32>() as usize,
                l - keep,
                "removed per sample"
            );
            for (pos, &id) in m.ids_shuffle[i].iter().enumerate() {
                assert_eq!(m.ids_restore[i][id], pos, "restore ∘ shuffle");
                assert_eq!(row[id], if pos < keep { 0.0 } else { 1.0 }, "mask of {id}");
            }
        }
        // on the device: gather(gather(x, shuffle), restore) == x
        let d = 3;
        let x: Vec<f32> = (0..n * l * d).map(|v| v as f32).collect();
        let x = Tensor::<3>::from_data(TensorData::new(x, [n, l, d]), &dev);
        let idx = |rows: &[Vec<usize>]| {
            let v: Vec<i64> = rows.concat().iter().map(|&v| v as i64).collect();
            Tensor::<3, Int>::from_data(TensorData::new(v, [n, l, 1]), &dev).repeat_dim(2, d)
        };
        let back = x
            .clone()
            .gather(1, idx(&m.ids_shuffle))
            .gather(1, idx(&m.ids_restore));
        assert_eq!(host(back).unwrap(), host(x).unwrap());
    }
    let a = random_masking(2, 16, 0.75, &mut Rng::new(1)).unwrap();
    assert_eq!(a, random_masking(2, 16, 0.75, &mut Rng::new(1)).unwrap());
    assert_ne!(a, random_masking(2, 16, 0.75, &mut Rng::new(2)).unwrap());
}

/// The loss written out on the host: mean over removed patches of the per-patch MSE.
fn host_loss(pred: &[f32], target: &[f32], mask: &[f32], p: usize, norm_pix: bool) -> f64 {
    let (mut sum, mut count) = (0.0f64, 0.0f64);
    for (i, &m) in mask.iter().enumerate() {
        let t: Vec<f64> = target[i * p..(i + 1) * p]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let mean = t.iter().sum::<f64>() / p as f64;
        let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (p - 1) as f64;
        let mse = (0..p)
            .map(|j| {
                let tj = if norm_pix {
                    (t[j] - mean) / (var + 1e-6).sqrt()
                } else {
                    t[j]
                };
                (pred[i * p + j] as f64 - tj).powi(2)
            })
            .sum::<f64>()
            / p as f64;
        sum += mse * m as f64;
        count += m as f64;
    }
    sum / count
}

#[test]
fn loss_ignores_kept_patches() {
    let dev = Device::flex();
    let (n, l, p) = (2, 8, 12);
    let mut rng = Rng::new(3);
    let mut draw = |k: usize| -> Vec<f32> { (0..k).map(|_| rng.normal() as f32).collect() };
    let (pred, target) = (draw(n * l * p), draw(n * l * p));
    let m = random_masking(n, l, 0.5, &mut Rng::new(4)).unwrap();
    let kept = m.ids_shuffle[1][0]; // a kept patch of sample 1
    let removed = m.ids_shuffle[1][l - 1];
    let loss = |pred: &[f32], norm_pix: bool| {
        let t3 = |v: &[f32]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), [n, l, p]), &dev);
        let mask = Tensor::<2>::from_data(TensorData::new(m.mask.data.clone(), [n, l]), &dev);
        host(masked_mse(t3(pred), t3(&target), mask, norm_pix))
            .unwrap()
            .data[0] as f64
    };
    for norm_pix in [false, true] {
        let base = loss(&pred, norm_pix);
        let want = host_loss(&pred, &target, &m.mask.data, p, norm_pix);
        assert!((base - want).abs() < 1e-5, "closed form {want} vs {base}");
        let mut changed = pred.clone();
        changed[(l + kept) * p..(l + kept + 1) * p].fill(100.0);
        assert_eq!(
            loss(&changed, norm_pix),
            base,
            "a kept patch changed the loss"
        );
        let mut changed = pred.clone();
        changed[(l + removed) * p..(l + removed + 1) * p].fill(100.0);
        assert!(
            loss(&changed, norm_pix) > base + 1e-4,
            "a removed patch left the loss"
        );
    }
}

#[test]
fn adamw_steps_reduce_the_loss_on_a_fixed_batch() {
    let cfg = MaeConfig {
        encoder: VitConfig::prenorm(4, 32, 2, 2, 16),
        decoder_dim: 16,
        decoder_depth: 1,
        decoder_heads: 2,
        mask_ratio: 0.75,
        norm_pix_loss: true,
    };
    let dev = Device::flex().autodiff();
    let mut mae = Mae::init(&cfg, &dev, 5).unwrap();
    let mut rng = Rng::new(9);
    let pixels: Vec<f32> = (0..4 * 3 * 16 * 16).map(|_| rng.normal() as f32).collect();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [4, 3, 16, 16]), &dev);
    let masking = random_masking(4, 16, 0.75, &mut Rng::new(11)).unwrap();
    let mut opt = AdamWConfig::new().with_weight_decay(0.05).init();
    let mut losses = Vec::new();
    for step in 0..8 {
        let loss = mae.forward(images.clone(), &masking).unwrap().loss;
        losses.push(host(loss.clone()).unwrap().data[0]);
        let grads = loss.backward();
        if step == 0 {
            let g = |t: Tensor<2>| host(t.grad(&grads).expect("gradient")).unwrap();
            let norm = |h: HostTensor| h.data.iter().map(|v| v * v).sum::<f32>();
            assert!(
                norm(g(mae.decoder_embed.weight.val())) > 0.0,
                "decoder_embed"
            );
            assert!(
                norm(g(mae.encoder.blocks[0].attn.qkv.weight.val())) > 0.0,
                "encoder"
            );
            assert!(
                mae.decoder_pos_embed.val().grad(&grads).is_none(),
                "fixed positions"
            );
        }
        let grads = GradientsParams::from_grads(grads, &mae);
        mae = opt.step(1e-3, mae, grads);
    }
    eprintln!("MAE AdamW losses: {losses:?}");
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.9 * first, "loss did not fall: {losses:?}");
}
