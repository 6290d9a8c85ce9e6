//! # mnist-hardware: what the machine is doing
//!
//! Owns sampling the host apart from any display (the way bottom separates
//! collection from drawing): CPU, memory and swap, this process, disks,
//! network and NVIDIA GPUs through NVML, with each GPU's processes and their
//! users' full names. A sample is a [`mnist_events::HardwareSnapshot`], the
//! payload of the event stream's `hardware` event; the terminal view
//! (`mnist-monitor stats`), the web page, `/metrics` and the alert rules all
//! read that one type.
//!
//! * [`Sampler`] takes one sample on demand;
//! * [`Monitor`] samples on a background thread at a fixed interval and fans
//!   samples out to subscribers, keeping a short history for sparklines;
//! * [`format`] renders a sample as gpustat-style text.

pub mod format;
mod gpu;
mod monitor;
mod sampler;

pub use monitor::{Monitor, Subscription, HISTORY};
pub use sampler::Sampler;

use mnist_events::HardwareSnapshot;
use std::path::PathBuf;

/// One snapshot now, with CPU usage and rates measured over a short window
/// (about 200 ms): what `stats --json` prints.
pub fn snapshot_once(watch: Vec<PathBuf>) -> HardwareSnapshot {
    let mut sampler = Sampler::new(watch);
    std::thread::sleep(monitor::sysinfo_min_interval());
    sampler.sample()
}

/// This machine's host name (`localhost` when the OS does not say).
pub fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|| "localhost".into())
}

/// The model names of this machine's NVIDIA GPUs, in index order (empty
/// where NVML is missing).
pub fn gpu_names() -> Vec<String> {
    gpu::Gpus::open()
        .sample()
        .into_iter()
        .filter_map(|g| g.name)
        .collect()
}

/// This machine's NVIDIA GPUs as NVML sees them now, in its (PCI bus)
/// order, or why there are none ("no NVIDIA GPU: …"): what picking a GPU
/// for a run reads.
pub fn gpus() -> Result<Vec<mnist_events::GpuStats>, String> {
    let gpus = gpu::Gpus::open();
    match gpus.error() {
        Some(why) => Err(why.to_string()),
        None => Ok(gpus.sample()),
    }
}
