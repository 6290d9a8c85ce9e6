//! The `hardware` event's payload: one snapshot of the machine, as the
//! sampler in `mnist-hardware` takes it every `--hw-interval`.
//!
//! Every reading that can fail on its own is an `Option`: a field the
//! platform or driver cannot give is `null`, and the rest stay intact. Rates
//! (`*_per_sec`) are averages over the interval since the previous sample.

use serde::{Deserialize, Serialize};

/// The machine at one moment. Also the JSON of `mnist-monitor stats --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareSnapshot {
    /// Unix milliseconds when the sample was taken.
    pub sampled_at_ms: u64,
    pub host: String,
    /// Seconds the rates are averaged over.
    pub interval_s: f64,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    /// The process that took the sample (the trainer or the server).
    pub process: ProcessStats,
    pub disks: Vec<DiskStats>,
    pub network: Vec<NetStats>,
    pub gpus: Vec<GpuStats>,
    /// Why `gpus` is empty: "no NVIDIA GPU: <reason>". Absent when NVML answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    pub model: String,
    /// Logical cores.
    pub cores: usize,
    pub physical_cores: Option<usize>,
    /// All cores together, 0–100.
    pub usage_percent: f32,
    pub per_core_percent: Vec<f32>,
    /// 1, 5 and 15 minute load averages.
    pub load_avg: [f64; 3],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub pid: u32,
    pub rss_bytes: u64,
    /// Of one core: 200 means two cores busy.
    pub cpu_percent: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Device name, e.g. `/dev/nvme0n1p2`.
    pub name: String,
    pub mount: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
    /// The watched directories (runs, checkpoints) that live on this disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetStats {
    pub interface: String,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
    pub rx_total_bytes: u64,
    pub tx_total_bytes: u64,
}

/// One NVIDIA GPU as NVML reports it. `Default` is a GPU nothing could be
/// read from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuStats {
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub utilization_percent: Option<u32>,
    pub memory_utilization_percent: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub temperature_celsius: Option<u32>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub fan_percent: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    pub pcie_rx_bytes_per_sec: Option<f64>,
    pub pcie_tx_bytes_per_sec: Option<f64>,
    pub processes: Vec<GpuProcess>,
}

/// A process using a GPU, with its owner's full user name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
    /// `compute` or `graphics`.
    pub kind: String,
    pub user: Option<String>,
    pub command: Option<String>,
    pub gpu_memory_bytes: Option<u64>,
}

impl GpuStats {
    /// Whether nobody is using it: no processes and under 5% busy.
    pub fn is_free(&self) -> bool {
        self.processes.is_empty() && self.utilization_percent.unwrap_or(0) < 5
    }
}

/// A rule that fired: the `alert` event's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable name of the rule: `loss_not_finite`, `loss_rising`,
    /// `gpu_temperature`, `gpu_memory`, `host_memory`, `gpu_idle`, `disk_full`.
    pub rule: String,
    pub severity: AlertSeverity,
    pub message: String,
    /// The observed value and the threshold it crossed, where numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// What was done about it, e.g. "run stopped (--stop-on-nan)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    Warning,
    Critical,
}
