//! Which compute backends this build has and which of them answer on this
//! machine.
//!
//! The CPU backend (Burn's `flex`: measured the fastest and the only stable
//! CPU backend of Burn 0.21 on this network, see BENCHMARKS.md) is always
//! built; `wgpu` and `cuda` are cargo features. Probing CUDA initialises it
//! with a one-element tensor; a missing driver shows up as a panic inside
//! Burn/CubeCL, which the probe turns into a reason. wgpu's adapters are
//! listed first: a software renderer (Mesa's lavapipe/llvmpipe,
//! SwiftShader) is reported as present but software, and `auto` never picks
//! it, since it trains far slower than the CPU backend.

use crate::config::BackendChoice;
use serde::Serialize;

/// A backend that a run can actually use, with its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Burn's `flex` backend on the CPU's threads.
    Cpu,
    /// A wgpu adapter, selected by its `WgpuDevice`.
    #[cfg(feature = "wgpu")]
    Wgpu(burn::backend::wgpu::WgpuDevice),
    /// The CUDA device with this index.
    #[cfg(feature = "cuda")]
    Cuda(usize),
}

impl Resolved {
    /// The backend's short name (`cpu`, `wgpu` or `cuda`), as logs and summaries report it.
    pub fn name(&self) -> &'static str {
        match self {
            Resolved::Cpu => "cpu",
            #[cfg(feature = "wgpu")]
            Resolved::Wgpu(_) => "wgpu",
            #[cfg(feature = "cuda")]
            Resolved::Cuda(_) => "cuda",
        }
    }
}

/// The backend a run trains on, its device, and why it was picked.
#[derive(Debug, Clone)]
pub struct Picked {
    /// The backend to train on, with its device.
    pub backend: Resolved,
    /// The device as a user knows it (`cpu (16 threads)`, an adapter name).
    pub device: String,
    /// One sentence for the run log: what was picked, and why.
    pub note: String,
}

/// What the machine offers, for `GET /api/backends` and `--backend auto`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    /// The backend: `cuda`, `wgpu` or `cpu`.
    pub name: &'static str,
    /// Compiled into this binary.
    pub compiled: bool,
    /// Compiled and a device answered.
    pub available: bool,
    /// The device is a software renderer: usable with `--backend wgpu`,
    /// slower than `cpu`, never picked by `auto`.
    pub software: bool,
    /// The device used, when available.
    pub device: Option<String>,
    /// Why not (or, for a software device, why `auto` skips it).
    pub reason: Option<String>,
}

/// Runs `f`, turning a panic into `Err(message)` without printing it.
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| panic_message(&*payload))
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// A device that answered a probe.
#[derive(Debug, Clone)]
struct Found {
    backend: Resolved,
    device: String,
    /// A software renderer (wgpu only).
    software: bool,
}

#[cfg(feature = "cuda")]
fn probe_cuda() -> Result<Found, String> {
    use burn::backend::cuda::{Cuda, CudaDevice};
    use burn::tensor::Tensor;
    // Without the driver library there is nothing to initialise; say so
    // plainly rather than through CubeCL's panic.
    let has_driver = ["/dev/nvidiactl", "/proc/driver/nvidia/version"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !has_driver {
        return Err(
            "no NVIDIA driver on this machine (no /dev/nvidiactl): install the NVIDIA driver and CUDA to train on an NVIDIA GPU"
                .into(),
        );
    }
    let device = CudaDevice::new(0);
    quietly(|| Tensor::<Cuda, 1>::zeros([1], &device).into_data())
        .map(|_| Found {
            backend: Resolved::Cuda(0),
            device: "cuda:0".to_string(),
            software: false,
        })
        .map_err(|e| {
            format!(
                "the NVIDIA driver is present but CUDA did not start ({}): check that nvidia-smi works and that CUDA's libraries are installed",
                first_line(&e)
            )
        })
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda() -> Result<Found, String> {
    Err("not compiled into this binary: build with --features cuda".into())
}

/// wgpu's adapters, best first: discrete, integrated, virtual, other GPUs,
/// then software renderers; each with the `WgpuDevice` that selects it.
#[cfg(feature = "wgpu")]
fn wgpu_adapters() -> Vec<(burn::backend::wgpu::WgpuDevice, wgpu::AdapterInfo)> {
    use burn::backend::wgpu::WgpuDevice;
    use wgpu::DeviceType;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let infos: Vec<wgpu::AdapterInfo> =
        block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .into_iter()
            .map(|a| a.get_info())
            .collect();
    let rank = |t: DeviceType| match t {
        DeviceType::DiscreteGpu => 0,
        DeviceType::IntegratedGpu => 1,
        DeviceType::VirtualGpu => 2,
        DeviceType::Other => 3,
        DeviceType::Cpu => 4,
    };
    let mut found = Vec::new();
    let mut seen = [0usize; 5];
    for info in infos {
        let kind = rank(info.device_type);
        // CubeCL numbers adapters within their type, as listed.
        let device = match info.device_type {
            DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(seen[kind]),
            DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(seen[kind]),
            DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(seen[kind]),
            DeviceType::Cpu => WgpuDevice::Cpu,
            DeviceType::Other => WgpuDevice::DefaultDevice,
        };
        seen[kind] += 1;
        found.push((kind, device, info));
    }
    found.sort_by_key(|(kind, _, _)| *kind);
    found.into_iter().map(|(_, d, i)| (d, i)).collect()
}

/// The names of wgpu's adapters, best first (for the kernel cache's key).
#[cfg(feature = "wgpu")]
pub(crate) fn adapter_names() -> Vec<String> {
    quietly(wgpu_adapters)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, info)| info.name)
        .collect()
}

/// Drives a future on this thread (wgpu's native futures are ready at
/// once or wake this thread).
#[cfg(feature = "wgpu")]
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(feature = "wgpu")]
fn probe_wgpu() -> Result<Found, String> {
    use burn::backend::wgpu::Wgpu;
    use burn::tensor::Tensor;
    let adapters =
        quietly(wgpu_adapters).map_err(|e| format!("wgpu did not start: {}", first_line(&e)))?;
    let Some((device, info)) = adapters.into_iter().next() else {
        return Err(
            "no GPU adapter: no Vulkan driver answered (install your GPU's Vulkan driver: the NVIDIA driver, or Mesa's for AMD and Intel)"
                .into(),
        );
    };
    let software = info.device_type == wgpu::DeviceType::Cpu;
    let name = format!(
        "{} ({:?}{})",
        info.name,
        info.backend,
        if software { ", software" } else { "" }
    );
    // A software renderer spends minutes compiling even this; don't make
    // every probe pay for it.
    if !software {
        quietly(|| Tensor::<Wgpu, 1>::zeros([1], &device).into_data()).map_err(|e| {
            format!(
                "the adapter {name} did not start: {} (update its driver, or use --backend cpu)",
                first_line(&e)
            )
        })?;
    }
    Ok(Found {
        backend: Resolved::Wgpu(device),
        device: name,
        software,
    })
}

#[cfg(not(feature = "wgpu"))]
fn probe_wgpu() -> Result<Found, String> {
    Err("not compiled into this binary: build with --features wgpu".into())
}

/// Why `auto` passes over a software adapter.
const SOFTWARE_REASON: &str = "a software renderer (the CPU emulating a GPU): far slower than --backend cpu, so auto skips it; --backend wgpu still uses it";

fn cpu_device() -> String {
    format!(
        "cpu ({} threads)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

fn status(name: &'static str, compiled: bool, probe: Result<Found, String>) -> BackendStatus {
    match probe {
        Ok(found) => BackendStatus {
            name,
            compiled,
            available: true,
            software: found.software,
            reason: found.software.then(|| SOFTWARE_REASON.to_string()),
            device: Some(found.device),
        },
        Err(reason) => BackendStatus {
            name,
            compiled,
            available: false,
            software: false,
            device: None,
            reason: Some(reason),
        },
    }
}

/// Probes every backend (GPU ones initialise their runtime, which can take a
/// moment the first time).
pub fn probe_all() -> Vec<BackendStatus> {
    crate::kernel_cache::configure();
    vec![
        status("cuda", cfg!(feature = "cuda"), probe_cuda()),
        status("wgpu", cfg!(feature = "wgpu"), probe_wgpu()),
        status(
            "cpu",
            true,
            Ok(Found {
                backend: Resolved::Cpu,
                device: cpu_device(),
                software: false,
            }),
        ),
    ]
}

/// The asked-for backend cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--backend {backend} is not usable here: {reason}")]
pub struct BackendUnavailable {
    /// `cuda` or `wgpu`.
    pub backend: &'static str,
    /// What the driver or the build said, as a sentence.
    pub reason: String,
}

/// Picks the backend for `choice`, with a sentence saying why (for `auto`),
/// or an error saying why the asked-for one can't be used.
pub fn resolve(choice: BackendChoice) -> Result<Picked, BackendUnavailable> {
    if choice != BackendChoice::Cpu {
        crate::kernel_cache::configure();
    }
    let picked = |found: Found, note: String| Picked {
        backend: found.backend,
        device: found.device,
        note,
    };
    let cpu = || Found {
        backend: Resolved::Cpu,
        device: cpu_device(),
        software: false,
    };
    match choice {
        BackendChoice::Cpu => Ok(picked(cpu(), "backend cpu (flex)".into())),
        BackendChoice::Cuda => {
            let found = probe_cuda().map_err(|reason| BackendUnavailable {
                backend: "cuda",
                reason,
            })?;
            let note = format!("backend cuda on {}", found.device);
            Ok(picked(found, note))
        }
        BackendChoice::Wgpu => {
            let found = probe_wgpu().map_err(|reason| BackendUnavailable {
                backend: "wgpu",
                reason,
            })?;
            let note = if found.software {
                format!(
                    "backend wgpu on {}: warning: this is a software renderer, far slower than --backend cpu",
                    found.device
                )
            } else {
                format!("backend wgpu on {}", found.device)
            };
            Ok(picked(found, note))
        }
        BackendChoice::Auto => {
            let cuda = match probe_cuda() {
                Ok(found) => {
                    let note = format!("auto picked cuda ({})", found.device);
                    return Ok(picked(found, note));
                }
                Err(reason) => reason,
            };
            let wgpu = match probe_wgpu() {
                Ok(found) if !found.software => {
                    let note = format!("auto picked wgpu ({}); cuda: {cuda}", found.device);
                    return Ok(picked(found, note));
                }
                Ok(found) => format!("{}: {SOFTWARE_REASON}", found.device),
                Err(reason) => reason,
            };
            Ok(picked(
                cpu(),
                format!("auto picked cpu; cuda: {cuda}; wgpu: {wgpu}"),
            ))
        }
    }
}
