//! Which compute backends this build has and which of them answer on this
//! machine.
//!
//! The CPU backend (Burn's `flex`: measured the fastest and the only stable
//! CPU backend of Burn 0.21 on this network, see BENCHMARKS.md) is always
//! built; `wgpu` and `cuda` are cargo features. Probing CUDA initialises it
//! with a one-element tensor; a missing driver shows up as a panic inside
//! Burn/CubeCL, which the probe turns into a reason. Without a device
//! index, CUDA trains on the GPU with the most free memory (NVML's view,
//! [`crate::device::pick_gpu`]). wgpu's adapters are listed first: a
//! software renderer (Mesa's lavapipe/llvmpipe, SwiftShader) is reported as
//! present but software, and `auto` never picks it, since it trains far
//! slower than the CPU backend.

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
    /// The device as a user knows it (`cpu (16 threads)`, a GPU's or an adapter's name).
    pub device: String,
    /// The device's index within the backend (`cuda:1` is 1); `None` on the CPU.
    pub index: Option<usize>,
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

/// Why a backend's device cannot be used here: the reason of a
/// [`BackendUnavailable`] and of `backends`' answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// The binary was built without the backend's feature.
    #[error("not compiled into this binary: build with --features {0}")]
    NotCompiled(&'static str),
    /// No NVIDIA kernel driver.
    #[error("no NVIDIA driver on this machine (no /dev/nvidiactl): install the NVIDIA driver and CUDA to train on an NVIDIA GPU")]
    NoDriver,
    /// The driver is there but CUDA panicked starting on the device.
    #[error("the NVIDIA driver is present but CUDA did not start on cuda:{ordinal} ({cause}): check that nvidia-smi works and that CUDA's libraries are installed")]
    CudaDidNotStart {
        /// The CUDA ordinal.
        ordinal: usize,
        /// The first line of CubeCL's panic.
        cause: String,
    },
    /// `--device cuda:N` past the GPUs CUDA sees.
    #[error("cuda:{index} does not exist: {}", there_are(.shown, .visible))]
    NoSuchGpu {
        /// The index asked for.
        index: usize,
        /// The GPUs CUDA sees, `cuda:0 (NVIDIA H200)`.
        shown: Vec<String>,
        /// `CUDA_VISIBLE_DEVICES`, when set.
        visible: Option<String>,
    },
    /// `CUDA_VISIBLE_DEVICES` hides every GPU.
    #[error("CUDA_VISIBLE_DEVICES={visible} shows none of this machine's {gpus} NVIDIA GPUs")]
    NoneVisible {
        /// `CUDA_VISIBLE_DEVICES`.
        visible: String,
        /// The GPUs NVML counts.
        gpus: usize,
    },
    /// wgpu panicked listing its adapters.
    #[error("wgpu did not start: {0}")]
    WgpuDidNotStart(String),
    /// No Vulkan driver answered (`Some(i)`: `--device wgpu:i` was asked).
    #[error("{}no GPU adapter: no Vulkan driver answered (install your GPU's Vulkan driver: the NVIDIA driver, or Mesa's for AMD and Intel)", .0.map_or(String::new(), |i| format!("wgpu:{i} does not exist: ")))]
    NoAdapter(Option<usize>),
    /// `--device wgpu:N` past the adapters wgpu found.
    #[error("wgpu:{index} does not exist: wgpu found {} adapter{}, best first: {}", .adapters.len(), if .adapters.len() == 1 { "" } else { "s" }, .adapters.join(", "))]
    NoSuchAdapter {
        /// The index asked for.
        index: usize,
        /// The adapters, best first, `wgpu:0 NVIDIA H200 (Vulkan)`.
        adapters: Vec<String>,
    },
    /// The adapter panicked on its first tensor.
    #[error("the adapter {name} did not start: {cause} (update its driver, or use --backend cpu)")]
    AdapterDidNotStart {
        /// The adapter.
        name: String,
        /// The first line of the panic.
        cause: String,
    },
}

/// `there are 2 CUDA GPUs that CUDA_VISIBLE_DEVICES=1,2 shows: cuda:0 (…), cuda:1 (…)`.
fn there_are(shown: &[String], visible: &Option<String>) -> String {
    let seen = match visible {
        Some(v) => format!(" that CUDA_VISIBLE_DEVICES={v} shows"),
        None => String::new(),
    };
    match shown.len() {
        0 => format!("there is no CUDA GPU{seen}"),
        n => format!(
            "there {} {n} CUDA GPU{}{seen}: {}",
            if n == 1 { "is" } else { "are" },
            if n == 1 { "" } else { "s" },
            shown.join(", ")
        ),
    }
}

/// A device that answered a probe.
#[derive(Debug, Clone)]
struct Found {
    backend: Resolved,
    device: String,
    /// Its index within the backend.
    index: Option<usize>,
    /// A software renderer (wgpu only).
    software: bool,
}

/// Without the driver there is nothing to initialise; say so plainly
/// rather than through CubeCL's panic.
#[cfg(feature = "cuda")]
fn cuda_driver() -> Result<(), Unusable> {
    let has_driver = ["/dev/nvidiactl", "/proc/driver/nvidia/version"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if has_driver {
        Ok(())
    } else {
        Err(Unusable::NoDriver)
    }
}

/// What CUDA will see: NVML's GPUs (or why there are none) and `CUDA_VISIBLE_DEVICES`.
#[cfg(feature = "cuda")]
fn cuda_view() -> (Result<Vec<mnist_events::GpuStats>, String>, Option<String>) {
    (
        mnist_hardware::gpus(),
        std::env::var("CUDA_VISIBLE_DEVICES").ok(),
    )
}

/// Why CUDA ordinal `index` names no GPU (`None` when it does, or when
/// NVML cannot say), listing those there are.
#[cfg(feature = "cuda")]
fn cuda_index_error(
    index: usize,
    gpus: &[mnist_events::GpuStats],
    visible: Option<&str>,
) -> Option<Unusable> {
    let shown = crate::device::visible_gpus(gpus, visible);
    (index >= shown.len()).then(|| Unusable::NoSuchGpu {
        index,
        shown: shown
            .iter()
            .map(|(o, g)| format!("cuda:{o} ({})", g.name.as_deref().unwrap_or("unnamed")))
            .collect(),
        visible: visible.map(str::to_string),
    })
}

/// Initialises CUDA on `ordinal` with a one-element tensor.
#[cfg(feature = "cuda")]
fn start_cuda(ordinal: usize, name: Option<String>) -> Result<Found, Unusable> {
    use burn::backend::cuda::{Cuda, CudaDevice};
    use burn::tensor::Tensor;
    let device = CudaDevice::new(ordinal);
    quietly(|| Tensor::<Cuda, 1>::zeros([1], &device).into_data())
        .map(|_| Found {
            backend: Resolved::Cuda(ordinal),
            device: name.unwrap_or_else(|| format!("cuda:{ordinal}")),
            index: Some(ordinal),
            software: false,
        })
        .map_err(|e| Unusable::CudaDidNotStart {
            ordinal,
            cause: first_line(&e),
        })
}

/// CUDA device `index`, or without one the GPU with the most free memory;
/// with how it was chosen (`cuda:1 (…), as asked`, `picked cuda:1 (…) over …`).
#[cfg(feature = "cuda")]
fn probe_cuda(index: Option<usize>) -> Result<(Found, String), Unusable> {
    cuda_driver()?;
    let (gpus, visible) = cuda_view();
    let visible = visible.as_deref();
    if let Some(i) = index {
        let name = match &gpus {
            Ok(gpus) => {
                if let Some(why) = cuda_index_error(i, gpus, visible) {
                    return Err(why);
                }
                crate::device::visible_gpus(gpus, visible)[i].1.name.clone()
            }
            Err(_) => None,
        };
        let why = match &name {
            Some(name) => format!("cuda:{i} ({name}), as asked"),
            None => format!("cuda:{i}, as asked"),
        };
        return start_cuda(i, name).map(|found| (found, why));
    }
    match &gpus {
        Ok(list) => match crate::device::pick_gpu(list, visible) {
            Some(pick) => start_cuda(pick.ordinal, pick.name).map(|f| (f, pick.reason)),
            None => Err(Unusable::NoneVisible {
                visible: visible.unwrap_or_default().to_string(),
                gpus: list.len(),
            }),
        },
        // NVML cannot say (a container without it): CUDA's first device.
        Err(nvml) => start_cuda(0, None).map(|f| (f, format!("picked cuda:0, the first ({nvml})"))),
    }
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda(_index: Option<usize>) -> Result<(Found, String), Unusable> {
    Err(Unusable::NotCompiled("cuda"))
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

/// The names of this machine's GPUs: NVML's, else wgpu's adapters, best
/// first (the kernel cache's key).
pub(crate) fn gpu_names() -> Vec<String> {
    let names = mnist_hardware::gpu_names();
    #[cfg(feature = "wgpu")]
    if names.is_empty() {
        return quietly(wgpu_adapters)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, info)| info.name)
            .collect();
    }
    names
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

/// `llvmpipe (LLVM 15.0.7, 256 bits) (Vulkan, software)`.
#[cfg(feature = "wgpu")]
fn adapter_label(info: &wgpu::AdapterInfo) -> String {
    let software = info.device_type == wgpu::DeviceType::Cpu;
    format!(
        "{} ({:?}{})",
        info.name,
        info.backend,
        if software { ", software" } else { "" }
    )
}

/// Adapter `index` of the best-first list, or why there is none (listing those there are).
#[cfg(feature = "wgpu")]
fn wgpu_adapter(
    index: Option<usize>,
) -> Result<(burn::backend::wgpu::WgpuDevice, wgpu::AdapterInfo), Unusable> {
    let mut adapters =
        quietly(wgpu_adapters).map_err(|e| Unusable::WgpuDidNotStart(first_line(&e)))?;
    match index {
        _ if adapters.is_empty() => Err(Unusable::NoAdapter(index)),
        None => Ok(adapters.swap_remove(0)),
        Some(i) if i < adapters.len() => Ok(adapters.swap_remove(i)),
        Some(i) => Err(Unusable::NoSuchAdapter {
            index: i,
            adapters: adapters
                .iter()
                .enumerate()
                .map(|(j, (_, info))| format!("wgpu:{j} {}", adapter_label(info)))
                .collect(),
        }),
    }
}

/// wgpu adapter `index` (best first), or the first.
#[cfg(feature = "wgpu")]
fn probe_wgpu(index: Option<usize>) -> Result<Found, Unusable> {
    use burn::backend::wgpu::Wgpu;
    use burn::tensor::Tensor;
    let (device, info) = wgpu_adapter(index)?;
    let software = info.device_type == wgpu::DeviceType::Cpu;
    let name = adapter_label(&info);
    // A software renderer spends minutes compiling even this; don't make
    // every probe pay for it.
    if !software {
        quietly(|| Tensor::<Wgpu, 1>::zeros([1], &device).into_data()).map_err(|e| {
            Unusable::AdapterDidNotStart {
                name: name.clone(),
                cause: first_line(&e),
            }
        })?;
    }
    Ok(Found {
        backend: Resolved::Wgpu(device),
        device: name,
        index: Some(index.unwrap_or(0)),
        software,
    })
}

#[cfg(not(feature = "wgpu"))]
fn probe_wgpu(_index: Option<usize>) -> Result<Found, Unusable> {
    Err(Unusable::NotCompiled("wgpu"))
}

/// Why `auto` passes over a software adapter.
const SOFTWARE_REASON: &str = "a software renderer (the CPU emulating a GPU): far slower than --backend cpu, so auto skips it; --backend wgpu still uses it";

fn cpu_device() -> String {
    format!(
        "cpu ({} threads)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

fn status(name: &'static str, compiled: bool, probe: Result<Found, Unusable>) -> BackendStatus {
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
            reason: Some(reason.to_string()),
        },
    }
}

/// Probes every backend (GPU ones initialise their runtime, which can take a
/// moment the first time). Call [`crate::set_up_kernel_cache`] first.
pub fn probe_all() -> Vec<BackendStatus> {
    vec![
        status(
            "cuda",
            cfg!(feature = "cuda"),
            probe_cuda(None).map(|(f, _)| f),
        ),
        status("wgpu", cfg!(feature = "wgpu"), probe_wgpu(None)),
        status("cpu", true, Ok(cpu())),
    ]
}

fn cpu() -> Found {
    Found {
        backend: Resolved::Cpu,
        device: cpu_device(),
        index: None,
        software: false,
    }
}

/// The asked-for backend, or device, cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not usable here: {reason}", asked(.backend, .device))]
pub struct BackendUnavailable {
    /// `cuda` or `wgpu`.
    pub backend: &'static str,
    /// The device index asked for, if one was (the error then names `--device`).
    pub device: Option<usize>,
    /// Why (its message is the sentence users read).
    pub reason: Unusable,
}

/// `--device cuda:1`, or `--backend cuda` when no index was asked for.
fn asked(backend: &str, device: &Option<usize>) -> String {
    match *device {
        Some(i) => format!("--device {backend}:{i}"),
        None => format!("--backend {backend}"),
    }
}

/// Picks the backend for `choice` and its device (`device`: the index
/// asked for; without one, the best), with a sentence saying what and why,
/// or an error saying why the asked-for one can't be used.
pub fn resolve(choice: BackendChoice, device: Option<usize>) -> Result<Picked, BackendUnavailable> {
    let unavailable = |backend: &'static str| {
        move |reason| BackendUnavailable {
            backend,
            device,
            reason,
        }
    };
    match choice {
        BackendChoice::Cpu => Ok(picked(cpu(), "backend cpu (flex)".into())),
        BackendChoice::Cuda => {
            let (found, why) = probe_cuda(device).map_err(unavailable("cuda"))?;
            Ok(picked(found, format!("backend cuda: {why}")))
        }
        BackendChoice::Wgpu => {
            let found = probe_wgpu(device).map_err(unavailable("wgpu"))?;
            let warning = if found.software {
                ": warning: this is a software renderer, far slower than --backend cpu"
            } else {
                ""
            };
            let note = format!("backend wgpu on {}{warning}", wgpu_name(&found));
            Ok(picked(found, note))
        }
        BackendChoice::Auto => Ok(auto()),
    }
}

/// `auto`: the best CUDA GPU, else a hardware wgpu adapter, else the CPU,
/// saying why each one before was passed over.
fn auto() -> Picked {
    let cuda = match probe_cuda(None) {
        Ok((found, why)) => return picked(found, format!("auto {why}")),
        Err(reason) => reason.to_string(),
    };
    let wgpu = match probe_wgpu(None) {
        Ok(found) if !found.software => {
            let note = format!("auto picked {}; cuda: {cuda}", wgpu_name(&found));
            return picked(found, note);
        }
        Ok(found) => format!("{}: {SOFTWARE_REASON}", found.device),
        Err(reason) => reason.to_string(),
    };
    picked(
        cpu(),
        format!("auto picked cpu; cuda: {cuda}; wgpu: {wgpu}"),
    )
}

/// `wgpu:0 (NVIDIA GeForce RTX 4090 (Vulkan))`.
fn wgpu_name(found: &Found) -> String {
    format!("wgpu:{} ({})", found.index.unwrap_or(0), found.device)
}

fn picked(found: Found, note: String) -> Picked {
    Picked {
        backend: found.backend,
        device: found.device,
        index: found.index,
        note,
    }
}

/// Whether `device` names a device of `choice` on this machine, without
/// starting a backend (NVML's count for CUDA, wgpu's adapter list): a
/// quick check before a run is queued. `None` passes, as does a CUDA index
/// when NVML cannot count but the driver is there.
pub fn check_device(
    choice: BackendChoice,
    device: Option<usize>,
) -> Result<(), BackendUnavailable> {
    let Some(index) = device else {
        return Ok(());
    };
    let error = |backend: &'static str, reason: Unusable| BackendUnavailable {
        backend,
        device,
        reason,
    };
    match choice {
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => match cuda_view() {
            (Ok(gpus), visible) => cuda_index_error(index, &gpus, visible.as_deref())
                .map_or(Ok(()), |why| Err(error("cuda", why))),
            (Err(_), _) => cuda_driver().map_err(|why| error("cuda", why)),
        },
        #[cfg(feature = "wgpu")]
        BackendChoice::Wgpu => wgpu_adapter(Some(index))
            .map(|_| ())
            .map_err(|why| error("wgpu", why)),
        #[cfg(not(feature = "cuda"))]
        BackendChoice::Cuda => probe_cuda(Some(index))
            .map(|_| ())
            .map_err(|why| error("cuda", why)),
        #[cfg(not(feature = "wgpu"))]
        BackendChoice::Wgpu => probe_wgpu(Some(index))
            .map(|_| ())
            .map_err(|why| error("wgpu", why)),
        BackendChoice::Auto | BackendChoice::Cpu => Ok(()),
    }
}
