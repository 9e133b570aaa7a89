//! Compute-device selection for every command (`--device auto|wgpu|cpu`): a hardware wgpu
//! adapter when one exists, else the CPU backend (Flex, the fastest measured; BENCHMARKS.md).

use anyhow::{Result, bail};
use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, DeviceKind};

/// What the user asked for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu if present, else the CPU backend.
    Auto,
    /// wgpu on the best adapter, software adapters (lavapipe) included.
    Wgpu,
    /// Burn's pure-Rust CPU backend (Flex).
    Cpu,
}

/// The device taken and a sentence saying why.
pub struct Selected {
    pub device: Device,
    pub label: String,
    pub reason: String,
}

/// One wgpu adapter as reported by the driver.
#[derive(Clone, Debug)]
pub struct AdapterInfo {
    pub name: String,
    pub backend: String,
    pub kind: wgpu::DeviceType,
}

impl AdapterInfo {
    pub fn is_hardware(&self) -> bool {
        matches!(
            self.kind,
            wgpu::DeviceType::DiscreteGpu
                | wgpu::DeviceType::IntegratedGpu
                | wgpu::DeviceType::VirtualGpu
        )
    }
}

/// Lists the adapters wgpu can see (Vulkan/Metal/DX12/GL), without creating a device.
pub fn adapters() -> Vec<AdapterInfo> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let list = pollster_block(instance.enumerate_adapters(wgpu::Backends::all()));
    list.iter()
        .map(|a| {
            let i = a.get_info();
            AdapterInfo {
                name: i.name,
                backend: format!("{:?}", i.backend),
                kind: i.device_type,
            }
        })
        .collect()
}

/// Minimal executor for the ready-immediately futures of native wgpu.
fn pollster_block<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
    fn noop(_: *const ()) {}
    fn clone(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE)
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable functions ignore the data pointer, so any pointer is valid.
    let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) };
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Picks the device for `choice` and explains the choice.
pub fn select(choice: DeviceChoice) -> Result<Selected> {
    let cpu = || Selected {
        device: Device::flex(),
        label: "cpu (flex)".into(),
        reason: String::new(),
    };
    match choice {
        DeviceChoice::Cpu => Ok(Selected {
            reason: "requested with --device cpu".into(),
            ..cpu()
        }),
        DeviceChoice::Wgpu => {
            let list = adapters();
            let Some(best) = list.iter().find(|a| a.is_hardware()).or(list.first()) else {
                bail!(
                    "--device wgpu: no wgpu adapter found (install a Vulkan/Metal/DX12 driver, e.g. Debian's mesa-vulkan-drivers for the lavapipe software adapter), or use --device cpu"
                );
            };
            Ok(Selected {
                device: Device::wgpu(DeviceKind::DefaultDevice),
                label: format!("wgpu ({} via {})", best.name, best.backend),
                reason: "requested with --device wgpu".into(),
            })
        }
        DeviceChoice::Auto => {
            let list = adapters();
            match list.iter().find(|a| a.is_hardware()) {
                Some(a) => Ok(Selected {
                    device: Device::wgpu(DeviceKind::DefaultDevice),
                    label: format!("wgpu ({} via {})", a.name, a.backend),
                    reason: format!("auto: hardware adapter {:?} found", a.kind),
                }),
                None => {
                    let seen: Vec<String> = list
                        .iter()
                        .map(|a| format!("{} ({:?})", a.name, a.kind))
                        .collect();
                    let why = if seen.is_empty() {
                        "auto: no wgpu adapter found, using the CPU backend".to_string()
                    } else {
                        format!(
                            "auto: only software adapters [{}], using the CPU backend (--device wgpu forces them)",
                            seen.join(", ")
                        )
                    };
                    Ok(Selected {
                        reason: why,
                        ..cpu()
                    })
                }
            }
        }
    }
}
