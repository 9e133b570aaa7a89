//! The same parity check on Burn's wgpu backend. In CI this runs on Mesa's lavapipe software
//! Vulkan adapter; it fails (never skips) when no wgpu adapter exists.

mod common;
use burn::tensor::Device;

/// The adapter `--device wgpu` takes (Burn opened with that adapter's API pinned).
fn wgpu() -> Device {
    mimr::device::select(mimr::device::DeviceChoice::Wgpu)
        .expect("a wgpu adapter")
        .device
}

#[test]
fn all_fixture_formats_match_pytorch_on_wgpu() {
    let adapters = mimr::device::adapters();
    assert!(
        !adapters.is_empty(),
        "no wgpu adapter: install a Vulkan driver (Debian: mesa-vulkan-drivers) to run the wgpu tests"
    );
    eprintln!("wgpu adapters: {adapters:?}");
    let device = wgpu();
    for (ckpt, heads) in common::FIXTURES {
        let (worst, at) = common::parity(ckpt, heads, &device);
        assert!(worst <= 1e-4, "max abs diff {worst} at {at}");
        eprintln!("{ckpt}: worst max-abs diff {worst:e} ({at})");
    }
}

/// The GPU paths of the queue (device-side same-index mask, index copy updated per enqueue
/// with wrap-around) and of kNN (device `topk`) pick what the CPU paths pick.
#[test]
fn queue_lookup_and_knn_agree_between_wgpu_and_cpu() {
    use burn::tensor::{Tensor, TensorData};
    use mimr::refine::queue::NnQueue;
    use mimr::rng::Rng;
    let gpu = wgpu();
    let cpu = Device::flex();
    let (n, d, b) = (40, 8, 6);
    let mut rng = Rng::new(11);
    let mut rand = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal() as f32).collect() };
    let x0 = rand(n * d);
    let batches: Vec<Vec<f32>> = (0..9).map(|_| rand(b * d)).collect();
    let make = |dev: &Device| {
        let x = Tensor::<2>::from_data(TensorData::new(x0.clone(), [n, d]), dev);
        NnQueue::from_parts(x, vec![-1; n], vec![-1; n], vec![0; n], 0)
    };
    let (mut qg, mut qc) = (make(&gpu), make(&cpu));
    let mut picks = (Vec::new(), Vec::new());
    for (s, z) in batches.iter().enumerate() {
        // dataset indices repeat across batches, so the same-index mask matters
        let idx: Vec<usize> = (0..b).map(|i| (s * b + i) % 25).collect();
        let labels = vec![0i64; b];
        for (q, dev, out) in [(&mut qg, &gpu, &mut picks.0), (&mut qc, &cpu, &mut picks.1)] {
            let zt = Tensor::<2>::from_data(TensorData::new(z.clone(), [b, d]), dev);
            let mut pick_rng = Rng::new(s as u64);
            let l = q.lookup(zt.clone(), &idx, 3, &mut pick_rng).unwrap();
            out.extend(l.picks);
            q.enqueue(zt, &idx, &labels);
        }
    }
    assert_eq!(
        picks.0, picks.1,
        "neighbour picks differ between wgpu and CPU"
    );
    // a masked top-k applies the mask on the device and picks what the host selection picks
    let s = rand(6 * 40);
    let (row_keys, col_keys): (Vec<i64>, Vec<i64>) =
        ((0..6).collect(), (0..40).map(|c| c % 7).collect());
    let mask = mimr::select::KeyMask {
        row_keys: &row_keys,
        col_keys: &col_keys,
        fill: -1.0,
    };
    let top = |dev: &Device| {
        let t = Tensor::<2>::from_data(TensorData::new(s.clone(), [6, 40]), dev);
        mimr::select::top_k(t, 5, Some(mask)).unwrap().cols
    };
    let (gpu_cols, cpu_cols) = (top(&gpu), top(&cpu));
    assert_eq!(
        gpu_cols, cpu_cols,
        "masked top-k differs between wgpu and CPU"
    );
    assert!(
        gpu_cols
            .iter()
            .enumerate()
            .all(|(i, &c)| col_keys[c] != row_keys[i / 5]),
        "a masked column was selected"
    );
    // kNN through the device topk path gives the CPU predictions
    let tr = rand(300 * d);
    let te = rand(50 * d);
    let labels: Vec<u32> = (0..300).map(|i| (i % 4) as u32).collect();
    let run = |dev: &Device| {
        mimr::eval::knn::knn_classify(&tr, &labels, &te, d, 4, &[1, 7], 0.07, dev, 16).unwrap()
    };
    assert_eq!(run(&gpu), run(&cpu));
}
