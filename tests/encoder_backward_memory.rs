//! The encoder's backward pass forms each Linear weight gradient as one folded matmul: no
//! buffer scales with batch × weight size (a per-image `[B, D, D_out]` gradient would).

use burn::tensor::{Device, Tensor, TensorData};
use mimr::model::vit::{Taps, Vit, VitConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the largest single allocation since the last reset.
struct Largest;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

#[test]
fn weight_gradients_do_not_scale_with_the_batch() {
    // 256 local-sized views of a 64-wide ViT: a per-image fc1 gradient would be
    // 256 × 64 × 256 × 4 B = 16 MiB; the largest activation is [256, 17, 256] = 4.25 MiB.
    let (b, img) = (256, 16);
    let cfg = VitConfig::prenorm(4, 64, 2, 2, img);
    let dev = Device::flex().autodiff();
    let vit = Vit::from_tensors(&cfg, &cfg.random_tensors(3), &dev).expect("model");
    let mut rng = mimr::rng::Rng::new(5);
    let pixels: Vec<f32> = (0..b * 3 * img * img)
        .map(|_| rng.normal() as f32)
        .collect();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [b, 3, img, img]), &dev);
    let taps = Taps {
        blocks: vec![],
        final_output: true,
    };
    let out = vit
        .forward(images, &taps)
        .final_output
        .expect("final output");
    let loss = (out.clone() * out).mean();
    LARGEST.store(0, Ordering::Relaxed);
    let grads = loss.backward();
    let largest = LARGEST.load(Ordering::Relaxed);
    let fc1 = vit.blocks[0]
        .mlp
        .fc1
        .weight
        .grad(&grads)
        .expect("fc1 gradient");
    assert_eq!(fc1.dims(), [64, 256]);
    assert!(
        largest < 8 << 20,
        "backward allocated one {largest}-byte buffer; a folded weight gradient needs < 8 MiB"
    );
}
