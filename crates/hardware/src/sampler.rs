//! One sample of the machine: CPU, memory, this process, disks, network and
//! (through [`crate::gpu`]) the NVIDIA GPUs.
//!
//! sysinfo's counters are deltas since the previous refresh, so the sampler
//! keeps its sysinfo objects between samples and divides by the elapsed time;
//! the first sample's rates cover the time since [`Sampler::new`].

use crate::gpu::Gpus;
use mnist_events::{
    now_ms, CpuStats, DiskStats, HardwareSnapshot, MemoryStats, NetStats, ProcessStats,
};
use std::path::{Path, PathBuf};
use std::time::Instant;
use sysinfo::{
    CpuRefreshKind, Disks, MemoryRefreshKind, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate,
    System, UpdateKind, Users,
};

/// Takes [`HardwareSnapshot`]s on demand, keeping its sysinfo and NVML
/// handles between samples so that rates cover the time since the last one.
pub struct Sampler {
    system: System,
    networks: Networks,
    disks: Disks,
    users: Users,
    gpus: Gpus,
    /// Directories whose free space matters (runs, checkpoints).
    watch: Vec<PathBuf>,
    pid: Pid,
    host: String,
    last: Instant,
}

impl Sampler {
    /// A sampler watching the free space under `watch`. Opens NVML once;
    /// without it, every snapshot says why in `gpu_error`.
    pub fn new(watch: Vec<PathBuf>) -> Self {
        let mut system = System::new();
        system.refresh_cpu_specifics(CpuRefreshKind::everything());
        let pid = Pid::from_u32(std::process::id());
        let mut sampler = Self {
            system,
            networks: Networks::new_with_refreshed_list(),
            disks: Disks::new_with_refreshed_list(),
            users: Users::new_with_refreshed_list(),
            gpus: Gpus::open(),
            watch: watch
                .into_iter()
                .map(|p| {
                    // Absolute, so it can be matched against mount points
                    // even before the directory exists.
                    let abs = std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p);
                    std::fs::canonicalize(&abs).unwrap_or(abs)
                })
                .collect(),
            pid,
            host: System::host_name().unwrap_or_else(|| "localhost".into()),
            last: Instant::now(),
        };
        sampler.refresh_processes(&[pid]);
        sampler
    }

    fn refresh_processes(&mut self, pids: &[Pid]) {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(pids),
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_user(UpdateKind::OnlyIfNotSet)
                .with_exe(UpdateKind::OnlyIfNotSet),
        );
    }

    /// Takes a snapshot. Cheap enough for 1 Hz: it refreshes only this
    /// process and the GPU processes, never the whole process table.
    pub fn sample(&mut self) -> HardwareSnapshot {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-3);
        self.last = now;

        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        self.networks.refresh(true);
        self.disks.refresh(true);

        let mut gpus = self.gpus.sample();
        // Owners and names of the GPU processes, plus our own row.
        let mut pids: Vec<Pid> = gpus
            .iter()
            .flat_map(|g| g.processes.iter().map(|p| Pid::from_u32(p.pid)))
            .collect();
        pids.push(self.pid);
        self.refresh_processes(&pids);
        for gpu in &mut gpus {
            for p in &mut gpu.processes {
                if let Some(proc_) = self.system.process(Pid::from_u32(p.pid)) {
                    p.command = Some(proc_.name().to_string_lossy().into_owned());
                    p.user = proc_.user_id().map(|uid| {
                        self.users
                            .get_user_by_id(uid)
                            .map(|u| u.name().to_string())
                            // A user added since start-up: look again once.
                            .unwrap_or_else(|| format!("uid {}", **uid))
                    });
                }
            }
        }

        let cpus = self.system.cpus();
        let load = System::load_average();
        let cpu = CpuStats {
            model: cpus
                .first()
                .map(|c| c.brand().trim().to_string())
                .unwrap_or_default(),
            cores: cpus.len(),
            physical_cores: System::physical_core_count(),
            usage_percent: self.system.global_cpu_usage(),
            per_core_percent: cpus.iter().map(|c| c.cpu_usage()).collect(),
            load_avg: [load.one, load.five, load.fifteen],
        };
        let memory = MemoryStats {
            total_bytes: self.system.total_memory(),
            used_bytes: self.system.used_memory(),
            available_bytes: self.system.available_memory(),
            swap_total_bytes: self.system.total_swap(),
            swap_used_bytes: self.system.used_swap(),
        };
        let process = match self.system.process(self.pid) {
            Some(p) => ProcessStats {
                pid: self.pid.as_u32(),
                rss_bytes: p.memory(),
                cpu_percent: p.cpu_usage(),
            },
            None => ProcessStats {
                pid: self.pid.as_u32(),
                rss_bytes: 0,
                cpu_percent: 0.0,
            },
        };

        HardwareSnapshot {
            sampled_at_ms: now_ms(),
            host: self.host.clone(),
            interval_s: dt,
            cpu,
            memory,
            process,
            disks: self.disk_stats(dt),
            network: self.net_stats(dt),
            gpu_error: self.gpus.error().map(str::to_string),
            gpus,
        }
    }

    fn disk_stats(&self, dt: f64) -> Vec<DiskStats> {
        let mut out: Vec<DiskStats> = Vec::new();
        for disk in self.disks.list() {
            let fs = disk.file_system().to_string_lossy();
            // Pseudo file systems say nothing about where data can go.
            if disk.total_space() == 0 || matches!(&*fs, "tmpfs" | "devtmpfs" | "squashfs") {
                continue;
            }
            let mount = disk.mount_point().to_string_lossy().into_owned();
            // Bind mounts show the same device several times; keep one.
            let name = disk.name().to_string_lossy().into_owned();
            if out
                .iter()
                .any(|d| d.name == name && d.total_bytes == disk.total_space())
            {
                continue;
            }
            let usage = disk.usage();
            out.push(DiskStats {
                name,
                mount,
                total_bytes: disk.total_space(),
                available_bytes: disk.available_space(),
                read_bytes_per_sec: usage.read_bytes as f64 / dt,
                write_bytes_per_sec: usage.written_bytes as f64 / dt,
                holds: Vec::new(),
            });
        }
        // Each watched directory belongs to the disk with the longest mount
        // point that is a prefix of it.
        for path in &self.watch {
            let best = out
                .iter_mut()
                .filter(|d| path.starts_with(Path::new(&d.mount)))
                .max_by_key(|d| d.mount.len());
            if let Some(d) = best {
                d.holds.push(path.display().to_string());
            }
        }
        out
    }

    fn net_stats(&self, dt: f64) -> Vec<NetStats> {
        let mut out: Vec<NetStats> = self
            .networks
            .list()
            .iter()
            .map(|(name, data)| NetStats {
                interface: name.clone(),
                rx_bytes_per_sec: data.received() as f64 / dt,
                tx_bytes_per_sec: data.transmitted() as f64 / dt,
                rx_total_bytes: data.total_received(),
                tx_total_bytes: data.total_transmitted(),
            })
            .collect();
        out.sort_by(|a, b| a.interface.cmp(&b.interface));
        out
    }
}
