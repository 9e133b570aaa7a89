//! Compute-device selection for every command (`--device auto|wgpu|cpu`): a hardware wgpu
//! adapter when one exists, else the CPU backend (Flex, the fastest measured; BENCHMARKS.md).

use anyhow::{Context, Result, bail};
use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};
use std::sync::Mutex;

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

/// A Burn backend named explicitly (`mimr bench --backend`), to compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// burn-ndarray on the CPU (deprecated in Burn; measured for comparison).
    Ndarray,
    /// wgpu on the adapter `--device wgpu` takes.
    Wgpu,
}

impl Backend {
    /// The device of this backend.
    #[allow(deprecated)] // ndarray is measured on purpose, to compare CPU backends
    pub fn device(self) -> Result<Device> {
        Ok(match self {
            Backend::Flex => Device::flex(),
            Backend::Ndarray => Device::ndarray(),
            Backend::Wgpu => select(DeviceChoice::Wgpu)?.device,
        })
    }

    /// The name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    pub backend: wgpu::Backend,
    pub kind: wgpu::DeviceType,
    /// Position among the adapters of the same backend and kind, as cubecl counts them.
    pub index: usize,
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

    /// "name via Backend", for the device label.
    fn label(&self) -> String {
        format!("wgpu ({} via {:?})", self.name, self.backend)
    }
}

/// Lists the adapters of wgpu's primary backends (Vulkan, Metal, DX12) without creating a device.
/// OpenGL is not asked: its EGL probe prints to stderr on headless machines, and Burn's kernels
/// target the primary backends.
pub fn adapters() -> Vec<AdapterInfo> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends &= wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(desc);
    let list = pollster_block(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    let infos: Vec<wgpu::AdapterInfo> = list.iter().map(|a| a.get_info()).collect();
    infos
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterInfo {
            name: a.name.clone(),
            backend: a.backend,
            kind: a.device_type,
            index: infos[..i]
                .iter()
                .filter(|b| b.backend == a.backend && b.device_type == a.device_type)
                .count(),
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

/// Burn's selector for `adapter`: its graphics API pinned (so Burn never probes another API, nor
/// lands on another one than the adapter listed) and its kind with the index cubecl counts.
fn burn_selector(adapter: &AdapterInfo) -> Result<(DeviceKind, WgpuBackend)> {
    let api = match adapter.backend {
        wgpu::Backend::Vulkan => WgpuBackend::Vulkan,
        wgpu::Backend::Metal => WgpuBackend::Metal,
        wgpu::Backend::Dx12 => WgpuBackend::Dx12,
        other => bail!("wgpu backend {other:?} is not supported"),
    };
    let kind = match adapter.kind {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(adapter.index),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(adapter.index),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(adapter.index),
        wgpu::DeviceType::Cpu => DeviceKind::Cpu,
        // Burn has no selector for an unclassified adapter: the API's preferred one
        wgpu::DeviceType::Other => DeviceKind::DefaultDevice,
    };
    Ok((kind, api))
}

/// The Burn device on `adapter`. Burn can pin a graphics API only by initialising the device,
/// once per process, so devices are kept for later calls.
fn wgpu_device(adapter: &AdapterInfo) -> Result<Device> {
    static OPENED: Mutex<Vec<((DeviceKind, WgpuBackend), Device)>> = Mutex::new(Vec::new());
    let key = burn_selector(adapter)?;
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d)) = opened.iter().find(|(k, _)| *k == key) {
        return Ok(d.clone());
    }
    let device = Device::wgpu_options()
        .device_kind(key.0.clone())
        .graphics_api(key.1)
        .init()
        .with_context(|| format!("cannot open the wgpu adapter {}", adapter.label()))?;
    opened.push((key, device.clone()));
    Ok(device)
}

/// The adapter `--device wgpu` takes: the first hardware one, else the first listed.
fn best_adapter(list: &[AdapterInfo]) -> Option<&AdapterInfo> {
    list.iter().find(|a| a.is_hardware()).or(list.first())
}

/// The CPU backend, with `reason`.
fn cpu(reason: String) -> Selected {
    Selected {
        device: Device::flex(),
        label: "cpu (flex)".into(),
        reason,
    }
}

/// Picks the device for `choice` and explains the choice.
pub fn select(choice: DeviceChoice) -> Result<Selected> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu("requested with --device cpu".into())),
        DeviceChoice::Wgpu => {
            let list = adapters();
            let Some(best) = best_adapter(&list) else {
                bail!(
                    "--device wgpu: no wgpu adapter found (install a Vulkan/Metal/DX12 driver, e.g. Debian's mesa-vulkan-drivers for the lavapipe software adapter), or use --device cpu"
                );
            };
            Ok(Selected {
                device: wgpu_device(best)?,
                label: best.label(),
                reason: "requested with --device wgpu".into(),
            })
        }
        DeviceChoice::Auto => Ok(select_auto(&adapters())),
    }
}

/// The device of the process with rank `local_rank` on its machine (data-parallel runs): with
/// hardware GPUs, the `local_rank`-th of them (ranks share GPUs when there are more ranks);
/// otherwise as [`select`].
pub fn select_for_rank(choice: DeviceChoice, local_rank: usize) -> Result<Selected> {
    if local_rank == 0 || choice == DeviceChoice::Cpu {
        return select(choice);
    }
    let list = adapters();
    let hw: Vec<&AdapterInfo> = list.iter().filter(|a| a.is_hardware()).collect();
    if hw.is_empty() {
        return select(choice);
    }
    let a = hw[local_rank % hw.len()];
    let mut reason = format!(
        "local rank {local_rank}: hardware adapter {} of {}",
        local_rank % hw.len(),
        hw.len()
    );
    if local_rank >= hw.len() {
        reason.push_str(" (more ranks than GPUs on this machine: ranks share one)");
    }
    Ok(Selected {
        device: wgpu_device(a)?,
        label: a.label(),
        reason,
    })
}

/// `--device auto`: a hardware adapter that opens, else the CPU backend, saying why.
fn select_auto(list: &[AdapterInfo]) -> Selected {
    let Some(a) = list.iter().find(|a| a.is_hardware()) else {
        let seen: Vec<String> = list
            .iter()
            .map(|a| format!("{} ({:?})", a.name, a.kind))
            .collect();
        return cpu(if seen.is_empty() {
            "auto: no wgpu adapter found, using the CPU backend".to_string()
        } else {
            format!(
                "auto: only software adapters [{}], using the CPU backend (--device wgpu forces them)",
                seen.join(", ")
            )
        });
    };
    match wgpu_device(a) {
        Ok(device) => Selected {
            device,
            label: a.label(),
            reason: format!("auto: hardware adapter {:?} found", a.kind),
        },
        Err(e) => cpu(format!("auto: {e:#}; using the CPU backend")),
    }
}

/// On a machine without a display session (no `WAYLAND_DISPLAY`, no `XDG_RUNTIME_DIR`), turns off
/// Mesa's implicit `VK_LAYER_MESA_device_select` Vulkan layer (`NODEVICE_SELECT=1`, its own
/// switch): it only orders GPUs by the display's, and its Wayland probe prints `error:
/// XDG_RUNTIME_DIR is invalid or not set` during adapter enumeration. mimr picks adapters itself.
/// Call it first thing in `main`, before any thread exists; a value the user set is kept.
pub fn quiet_headless_vulkan() {
    let unset = |k: &str| std::env::var_os(k).is_none();
    if unset("WAYLAND_DISPLAY") && unset("XDG_RUNTIME_DIR") && unset("NODEVICE_SELECT") {
        // SAFETY: called at the start of `main`, while the process has a single thread, so no
        // other thread can read the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
