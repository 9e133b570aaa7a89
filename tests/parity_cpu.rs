//! Every fixture format reproduces PyTorch's block outputs and final output (native and
//! interpolated positional grids) to ≤ 1e-4 on the CPU backend (Flex).

mod common;
use burn::tensor::Device;

#[test]
fn all_fixture_formats_match_pytorch_on_cpu() {
    for (ckpt, heads) in common::FIXTURES {
        let (worst, at) = common::parity(ckpt, heads, &Device::flex());
        assert!(worst <= 1e-4, "max abs diff {worst} at {at}");
        eprintln!("{ckpt}: worst max-abs diff {worst:e} ({at})");
    }
}
