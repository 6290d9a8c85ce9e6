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
    /// Host name of the machine sampled (`localhost` if unknown).
    pub host: String,
    /// Seconds the rates are averaged over.
    pub interval_s: f64,
    /// CPU model, core count, usage and load.
    pub cpu: CpuStats,
    /// Host RAM and swap.
    pub memory: MemoryStats,
    /// The process that took the sample (the trainer or the server).
    pub process: ProcessStats,
    /// Real (non-pseudo) file systems, one row per device.
    pub disks: Vec<DiskStats>,
    /// Network interfaces, sorted by name.
    pub network: Vec<NetStats>,
    /// NVIDIA GPUs in index order; empty without NVML (see `gpu_error`).
    pub gpus: Vec<GpuStats>,
    /// Why `gpus` is empty: "no NVIDIA GPU: <reason>". Absent when NVML answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_error: Option<String>,
}

/// The host's CPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Brand string of the first CPU, e.g. `AMD EPYC 7763 64-Core Processor`.
    pub model: String,
    /// Logical cores.
    pub cores: usize,
    /// Physical cores, where the platform reports them.
    pub physical_cores: Option<usize>,
    /// All cores together, 0–100.
    pub usage_percent: f32,
    /// Usage of each logical core, 0–100.
    pub per_core_percent: Vec<f32>,
    /// 1, 5 and 15 minute load averages.
    pub load_avg: [f64; 3],
}

/// Host RAM and swap, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Installed RAM.
    pub total_bytes: u64,
    /// RAM in use.
    pub used_bytes: u64,
    /// RAM that can still be given to programs (free plus reclaimable caches).
    pub available_bytes: u64,
    /// Swap space configured.
    pub swap_total_bytes: u64,
    /// Swap space in use.
    pub swap_used_bytes: u64,
}

/// The process that took the sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Its process id.
    pub pid: u32,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Of one core: 200 means two cores busy.
    pub cpu_percent: f32,
}

/// One mounted file system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Device name, e.g. `/dev/nvme0n1p2`.
    pub name: String,
    /// Where it is mounted, e.g. `/home`.
    pub mount: String,
    /// Capacity.
    pub total_bytes: u64,
    /// Space still available to this user.
    pub available_bytes: u64,
    /// Bytes read per second over the interval.
    pub read_bytes_per_sec: f64,
    /// Bytes written per second over the interval.
    pub write_bytes_per_sec: f64,
    /// The watched directories (runs, checkpoints) that live on this disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetStats {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// Bytes received per second over the interval.
    pub rx_bytes_per_sec: f64,
    /// Bytes sent per second over the interval.
    pub tx_bytes_per_sec: f64,
    /// Bytes received in total, as the OS counts them.
    pub rx_total_bytes: u64,
    /// Bytes sent in total, as the OS counts them.
    pub tx_total_bytes: u64,
}

/// One NVIDIA GPU as NVML reports it. `Default` is a GPU nothing could be
/// read from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuStats {
    /// NVML device index.
    pub index: u32,
    /// Model name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: Option<String>,
    /// NVML's UUID of the device (`GPU-…`).
    pub uuid: Option<String>,
    /// Percent of time a kernel was running over NVML's last sample period, 0–100.
    pub utilization_percent: Option<u32>,
    /// Percent of time device memory was being read or written, 0–100.
    pub memory_utilization_percent: Option<u32>,
    /// Device memory allocated.
    pub memory_used_bytes: Option<u64>,
    /// Device memory installed.
    pub memory_total_bytes: Option<u64>,
    /// Core (die) temperature.
    pub temperature_celsius: Option<u32>,
    /// Current power draw.
    pub power_watts: Option<f64>,
    /// Enforced power limit.
    pub power_limit_watts: Option<f64>,
    /// First fan's speed, percent of its maximum; `None` when passively cooled.
    pub fan_percent: Option<u32>,
    /// Current SM (shader) clock.
    pub sm_clock_mhz: Option<u32>,
    /// Current memory clock.
    pub memory_clock_mhz: Option<u32>,
    /// PCIe traffic into the GPU, bytes per second.
    pub pcie_rx_bytes_per_sec: Option<f64>,
    /// PCIe traffic out of the GPU, bytes per second.
    pub pcie_tx_bytes_per_sec: Option<f64>,
    /// Processes holding a context on this GPU (compute first).
    pub processes: Vec<GpuProcess>,
}

/// A process using a GPU, with its owner's full user name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    /// Process id on the host.
    pub pid: u32,
    /// `compute` or `graphics`.
    pub kind: String,
    /// Owner's user name (`uid N` if unknown); `None` when the process could
    /// not be read.
    pub user: Option<String>,
    /// Process name; `None` when the process could not be read.
    pub command: Option<String>,
    /// Device memory it holds, where the driver reports it.
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
    /// Stable name of the rule: `loss_not_finite`, `loss_spike`,
    /// `loss_rising`, `grad_jump`, `stalled`, `gpu_temperature`,
    /// `gpu_memory`, `host_memory`, `gpu_idle`, `disk_full`.
    pub rule: String,
    /// How urgent it is.
    pub severity: AlertSeverity,
    /// A sentence for people: what happened and a likely cause.
    pub message: String,
    /// The observed value and the threshold it crossed, where numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The threshold the value crossed, where numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// What was done about it, e.g. "run stopped (--stop-on-nan)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// For a run going wrong (`loss_not_finite`, `loss_spike`,
    /// `grad_jump`): where, which layer, and what to try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Box<crate::Diagnosis>>,
}

/// How urgent an [`Alert`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// Worth a look; the run goes on.
    Warning,
    /// The run is in trouble (a NaN or infinite loss).
    Critical,
}
