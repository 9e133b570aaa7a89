//! The same parity check on Burn's wgpu backend. In CI this runs on Mesa's lavapipe software
//! Vulkan adapter; it fails (never skips) when no wgpu adapter exists.

mod common;
use burn::tensor::{Device, DeviceKind};

#[test]
fn all_fixture_formats_match_pytorch_on_wgpu() {
    let adapters = mimr::device::adapters();
    assert!(
        !adapters.is_empty(),
        "no wgpu adapter: install a Vulkan driver (Debian: mesa-vulkan-drivers) to run the wgpu tests"
    );
    eprintln!("wgpu adapters: {adapters:?}");
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    for (ckpt, heads) in common::FIXTURES {
        let (worst, at) = common::parity(ckpt, heads, &device);
        assert!(worst <= 1e-4, "max abs diff {worst} at {at}");
        eprintln!("{ckpt}: worst max-abs diff {worst:e} ({at})");
    }
}
