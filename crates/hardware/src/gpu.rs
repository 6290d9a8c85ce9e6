//! NVIDIA GPUs through NVML (nvml-wrapper loads `libnvidia-ml` at run time).
//!
//! No library, no driver or no device is a normal state: [`Gpus::error`]
//! says "no NVIDIA GPU: <reason>" and the samples are empty. A field one GPU
//! cannot report (fan on a passively cooled H100, PCIe counters in a VM) is
//! `None`; the others are still read.

use mnist_events::{GpuProcess, GpuStats};
use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

/// NVML, once opened, or why it could not be.
pub struct Gpus {
    nvml: Result<Nvml, String>,
}

impl Gpus {
    /// Loads NVML and counts devices; failure is kept as the reason, never raised.
    pub fn open() -> Self {
        let nvml = Nvml::init().map_err(|e| format!("no NVIDIA GPU: {}", init_reason(&e)));
        let nvml = nvml.and_then(|n| match n.device_count() {
            Ok(0) => Err("no NVIDIA GPU: the driver reports 0 devices".to_string()),
            Ok(_) => Ok(n),
            Err(e) => Err(format!("no NVIDIA GPU: NVML cannot count devices: {e}")),
        });
        Self { nvml }
    }

    /// Why there are no GPUs, if there are none.
    pub fn error(&self) -> Option<&str> {
        self.nvml.as_ref().err().map(String::as_str)
    }

    /// Every GPU's readings (NVML keeps its own rates: no interval needed).
    pub fn sample(&self) -> Vec<GpuStats> {
        let Ok(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .map(|index| match nvml.device_by_index(index) {
                Ok(dev) => read_device(index, &dev),
                Err(_) => GpuStats {
                    index,
                    ..Default::default()
                },
            })
            .collect()
    }
}

fn init_reason(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            "NVML (libnvidia-ml.so.1) is not installed: no NVIDIA driver on this machine".into()
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".into(),
        other => format!("NVML failed to start: {other}"),
    }
}

fn read_device(index: u32, dev: &nvml_wrapper::Device<'_>) -> GpuStats {
    let util = dev.utilization_rates().ok();
    let mem = dev.memory_info().ok();
    let mut processes = Vec::new();
    for (kind, list) in [
        ("compute", dev.running_compute_processes()),
        ("graphics", dev.running_graphics_processes()),
    ] {
        for p in list.unwrap_or_default() {
            // A process doing both shows once, as compute.
            if processes.iter().any(|q: &GpuProcess| q.pid == p.pid) {
                continue;
            }
            processes.push(GpuProcess {
                pid: p.pid,
                kind: kind.into(),
                user: None,
                command: None,
                gpu_memory_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                },
            });
        }
    }
    GpuStats {
        index,
        name: dev.name().ok(),
        uuid: dev.uuid().ok(),
        utilization_percent: util.as_ref().map(|u| u.gpu),
        memory_utilization_percent: util.as_ref().map(|u| u.memory),
        memory_used_bytes: mem.as_ref().map(|m| m.used),
        memory_total_bytes: mem.as_ref().map(|m| m.total),
        temperature_celsius: dev.temperature(TemperatureSensor::Gpu).ok(),
        // NVML reports milliwatts.
        power_watts: dev.power_usage().ok().map(|mw| mw as f64 / 1000.0),
        power_limit_watts: dev.enforced_power_limit().ok().map(|mw| mw as f64 / 1000.0),
        fan_percent: dev.fan_speed(0).ok(),
        sm_clock_mhz: dev.clock_info(Clock::SM).ok(),
        memory_clock_mhz: dev.clock_info(Clock::Memory).ok(),
        // NVML reports KB/s.
        pcie_rx_bytes_per_sec: dev
            .pcie_throughput(PcieUtilCounter::Receive)
            .ok()
            .map(|k| k as f64 * 1024.0),
        pcie_tx_bytes_per_sec: dev
            .pcie_throughput(PcieUtilCounter::Send)
            .ok()
            .map(|k| k as f64 * 1024.0),
        processes,
    }
}
