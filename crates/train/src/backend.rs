//! Which compute backends this build has and which of them answer on this
//! machine.
//!
//! The CPU backend (Burn's `flex`: measured the fastest and the only stable
//! CPU backend of Burn 0.21 on this network, see BENCHMARKS.md) is always
//! built; `wgpu` and `cuda` are cargo features. Probing a GPU backend
//! initialises it with a one-element tensor; a missing driver shows up as a
//! panic inside Burn/CubeCL, which the probe turns into a reason string.

use crate::config::BackendChoice;
use serde::Serialize;

/// A backend that a run can actually use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    #[cfg(feature = "wgpu")]
    Wgpu,
    #[cfg(feature = "cuda")]
    Cuda,
}

impl Resolved {
    pub fn name(self) -> &'static str {
        match self {
            Resolved::Cpu => "cpu",
            #[cfg(feature = "wgpu")]
            Resolved::Wgpu => "wgpu",
            #[cfg(feature = "cuda")]
            Resolved::Cuda => "cuda",
        }
    }
}

/// What the machine offers, for `GET /api/backends` and `--backend auto`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    pub name: &'static str,
    /// Compiled into this binary.
    pub compiled: bool,
    /// Compiled and a device answered.
    pub available: bool,
    /// The device used, when available.
    pub device: Option<String>,
    /// Why not, when unavailable.
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

#[cfg(feature = "cuda")]
fn probe_cuda() -> Result<String, String> {
    use burn::backend::cuda::{Cuda, CudaDevice};
    use burn::tensor::Tensor;
    // Without the driver library there is nothing to initialise; say so
    // plainly rather than through CubeCL's panic.
    let has_driver = ["/dev/nvidiactl", "/proc/driver/nvidia/version"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if !has_driver {
        return Err("no NVIDIA driver (no /dev/nvidiactl)".into());
    }
    let device = CudaDevice::new(0);
    quietly(|| Tensor::<Cuda, 1>::zeros([1], &device).into_data())
        .map(|_| "cuda:0".to_string())
        .map_err(|e| format!("CUDA did not initialise: {}", first_line(&e)))
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda() -> Result<String, String> {
    Err("not compiled in (build with --features cuda)".into())
}

#[cfg(feature = "wgpu")]
fn probe_wgpu() -> Result<String, String> {
    use burn::backend::wgpu::{Wgpu, WgpuDevice};
    use burn::tensor::Tensor;
    let device = WgpuDevice::default();
    quietly(|| Tensor::<Wgpu, 1>::zeros([1], &device).into_data())
        .map(|_| format!("{device:?}"))
        .map_err(|e| format!("no wgpu adapter: {}", first_line(&e)))
}

#[cfg(not(feature = "wgpu"))]
fn probe_wgpu() -> Result<String, String> {
    Err("not compiled in (build with --features wgpu)".into())
}

fn status(name: &'static str, compiled: bool, probe: Result<String, String>) -> BackendStatus {
    let available = probe.is_ok();
    let (device, reason) = match probe {
        Ok(d) => (Some(d), None),
        Err(r) => (None, Some(r)),
    };
    BackendStatus {
        name,
        compiled,
        available,
        device,
        reason,
    }
}

/// Probes every backend (GPU ones initialise their runtime, which can take a
/// moment the first time).
pub fn probe_all() -> Vec<BackendStatus> {
    vec![
        status("cuda", cfg!(feature = "cuda"), probe_cuda()),
        status("wgpu", cfg!(feature = "wgpu"), probe_wgpu()),
        status("cpu", true, Ok("cpu (flex)".into())),
    ]
}

/// Picks the backend for `choice`. Returns it with a sentence explaining the
/// pick (for `auto`) or an error saying why the asked-for one can't be used.
pub fn resolve(choice: BackendChoice) -> Result<(Resolved, String), String> {
    match choice {
        BackendChoice::Cpu => Ok((Resolved::Cpu, "backend cpu (flex)".into())),
        BackendChoice::Cuda => {
            let device =
                probe_cuda().map_err(|r| format!("--backend cuda is not usable here: {r}"))?;
            Ok((cuda_resolved(), format!("backend cuda on {device}")))
        }
        BackendChoice::Wgpu => {
            let device =
                probe_wgpu().map_err(|r| format!("--backend wgpu is not usable here: {r}"))?;
            Ok((wgpu_resolved(), format!("backend wgpu on {device}")))
        }
        BackendChoice::Auto => {
            let cuda = probe_cuda();
            if let Ok(device) = &cuda {
                return Ok((cuda_resolved(), format!("auto picked cuda ({device})")));
            }
            let wgpu = probe_wgpu();
            if let Ok(device) = &wgpu {
                return Ok((
                    wgpu_resolved(),
                    format!("auto picked wgpu ({device}); cuda: {}", cuda.unwrap_err()),
                ));
            }
            Ok((
                Resolved::Cpu,
                format!(
                    "auto picked cpu; cuda: {}; wgpu: {}",
                    cuda.unwrap_err(),
                    wgpu.unwrap_err()
                ),
            ))
        }
    }
}

// These are only reached after the matching probe succeeded, which can only
// happen when the feature is compiled in.
#[cfg(feature = "cuda")]
fn cuda_resolved() -> Resolved {
    Resolved::Cuda
}
#[cfg(not(feature = "cuda"))]
fn cuda_resolved() -> Resolved {
    unreachable!("cuda probe fails without the feature")
}
#[cfg(feature = "wgpu")]
fn wgpu_resolved() -> Resolved {
    Resolved::Wgpu
}
#[cfg(not(feature = "wgpu"))]
fn wgpu_resolved() -> Resolved {
    unreachable!("wgpu probe fails without the feature")
}
