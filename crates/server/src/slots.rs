//! Where queued runs train: one run per device at a time.
//!
//! A box with N GPUs trains up to N queued runs at once, one per GPU that
//! is free: not training a run of this server and not used by anyone
//! else's process (NVML lists the processes on each GPU; a GPU another
//! user computes on counts as busy, the way nvitop shows it). The CPU is
//! one device too: CPU runs go one at a time, since two would only share
//! its cores. [`place`] decides, from a snapshot of the devices, where the
//! next queued run may start, or why it waits; it is pure, so every rule
//! is unit-tested without a GPU.

use mnist_events::GpuStats;
use mnist_train::BackendChoice;
use std::collections::HashMap;

/// The devices held now, each with the run holding it (`run ID`), for the reasons.
pub type Taken = HashMap<Slot, String>;

/// A device that trains one run at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The CPU backend.
    Cpu,
    /// The CUDA device with this index (NVML's and nvidia-smi's).
    Cuda(usize),
    /// The wgpu adapter with this index (best first, as `backends` lists them).
    Wgpu(usize),
}

impl Slot {
    /// How a run's config names this device: its backend and index.
    pub fn backend_and_device(&self) -> (BackendChoice, Option<usize>) {
        match self {
            Slot::Cpu => (BackendChoice::Cpu, None),
            Slot::Cuda(i) => (BackendChoice::Cuda, Some(*i)),
            Slot::Wgpu(i) => (BackendChoice::Wgpu, Some(*i)),
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Cpu => write!(f, "cpu"),
            Slot::Cuda(i) => write!(f, "cuda:{i}"),
            Slot::Wgpu(i) => write!(f, "wgpu:{i}"),
        }
    }
}

/// The device a run another process trains holds, from its `run_started`
/// (`backend`, `device_index`); a run that has not said yet holds the CPU
/// (loading data, then most likely training there).
pub fn slot_of(backend: Option<BackendChoice>, index: Option<usize>) -> Option<Slot> {
    match backend {
        None | Some(BackendChoice::Cpu) => Some(Slot::Cpu),
        Some(BackendChoice::Wgpu) => Some(Slot::Wgpu(index.unwrap_or(0))),
        // NVML lists a CUDA run's process on its GPU; `auto` is never
        // what a run trained on.
        Some(BackendChoice::Cuda | BackendChoice::Auto) => None,
    }
}

/// The machine's devices as the scheduler sees them at one moment.
#[derive(Debug, Clone, Default)]
pub struct Devices {
    /// NVML's GPUs CUDA can use here, each `index` CUDA's ordinal (after
    /// `CUDA_VISIBLE_DEVICES`); empty without CUDA.
    pub cuda: Vec<GpuStats>,
    /// How many wgpu adapters this build can train on (hardware or software).
    pub wgpu: usize,
    /// Whether `auto` would train on a hardware wgpu adapter (no CUDA, a real GPU).
    pub auto_wgpu: bool,
    /// This process's id: its own processes on a GPU are its runs, not someone else's.
    pub own_pid: u32,
}

/// Where a queued run goes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Start it on this device.
    Start(Slot),
    /// Leave it queued, for this reason (shown on the page).
    Wait(String),
}

/// Why a CUDA GPU is busy, or `None` when it is free: a run of ours holds
/// it, or another process (another user, another program) computes on it.
fn busy(gpu: &GpuStats, taken: &Taken, own_pid: u32) -> Option<String> {
    let index = gpu.index as usize;
    if let Some(holder) = taken.get(&Slot::Cuda(index)) {
        return Some(format!("cuda:{index} trains {holder}"));
    }
    let others: Vec<String> = gpu
        .processes
        .iter()
        .filter(|p| p.pid != own_pid)
        .map(|p| match (&p.user, &p.command) {
            (Some(u), Some(c)) => format!("{u} ({c})"),
            (Some(u), None) => u.clone(),
            (None, Some(c)) => c.clone(),
            (None, None) => format!("pid {}", p.pid),
        })
        .collect();
    (!others.is_empty()).then(|| format!("cuda:{index} is used by {}", others.join(", ")))
}

/// The free GPU with the most free memory (then the least utilisation).
fn best_free_gpu(devices: &Devices, taken: &Taken) -> Result<Slot, String> {
    if devices.cuda.is_empty() {
        return Err("no CUDA GPU here".into());
    }
    let mut reasons = Vec::new();
    let mut free: Vec<&GpuStats> = Vec::new();
    for gpu in &devices.cuda {
        match busy(gpu, taken, devices.own_pid) {
            Some(why) => reasons.push(why),
            None => free.push(gpu),
        }
    }
    free.sort_by_key(|g| mnist_train::device::preference(g.index as usize, g));
    match free.first() {
        Some(g) => Ok(Slot::Cuda(g.index as usize)),
        None => Err(format!("every GPU is busy: {}", reasons.join("; "))),
    }
}

/// Where a run asking for `backend` (and `device`, an index within it) may
/// start now, given the devices and the slots this server's runs hold.
pub fn place(
    backend: BackendChoice,
    device: Option<usize>,
    devices: &Devices,
    taken: &Taken,
) -> Placement {
    let slot_free = |slot: Slot| match taken.get(&slot) {
        Some(holder) => Placement::Wait(format!("{slot}, which {holder} trains on")),
        None => Placement::Start(slot),
    };
    match (backend, device) {
        (BackendChoice::Cpu, _) => slot_free(Slot::Cpu),
        (BackendChoice::Cuda, Some(i)) => match devices.cuda.iter().find(|g| g.index as usize == i)
        {
            None => Placement::Wait(format!(
                "cuda:{i} does not exist here ({} CUDA GPUs)",
                devices.cuda.len()
            )),
            Some(gpu) => match busy(gpu, taken, devices.own_pid) {
                Some(why) => Placement::Wait(why),
                None => Placement::Start(Slot::Cuda(i)),
            },
        },
        (BackendChoice::Cuda, None) => match best_free_gpu(devices, taken) {
            Ok(slot) => Placement::Start(slot),
            Err(why) => Placement::Wait(why),
        },
        (BackendChoice::Wgpu, i) => {
            let i = i.unwrap_or(0);
            if i >= devices.wgpu.max(1) {
                return Placement::Wait(format!("wgpu:{i} does not exist here"));
            }
            slot_free(Slot::Wgpu(i))
        }
        // `auto` trains where `--backend auto` would: on a GPU when the box
        // has one (waiting for a free one rather than crawling on the CPU),
        // else on the CPU.
        (BackendChoice::Auto, _) if !devices.cuda.is_empty() => {
            match best_free_gpu(devices, taken) {
                Ok(slot) => Placement::Start(slot),
                Err(why) => Placement::Wait(why),
            }
        }
        (BackendChoice::Auto, _) if devices.auto_wgpu => slot_free(Slot::Wgpu(0)),
        (BackendChoice::Auto, _) => slot_free(Slot::Cpu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_events::GpuProcess;

    fn gpu(index: u32, used_gib: u64, util: u32, pids: &[u32]) -> GpuStats {
        GpuStats {
            index,
            memory_used_bytes: Some(used_gib << 30),
            memory_total_bytes: Some(80 << 30),
            utilization_percent: Some(util),
            processes: pids
                .iter()
                .map(|&pid| GpuProcess {
                    pid,
                    kind: "compute".into(),
                    user: Some("alice".into()),
                    command: Some("python".into()),
                    gpu_memory_bytes: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn devices(cuda: Vec<GpuStats>) -> Devices {
        Devices {
            cuda,
            wgpu: 0,
            auto_wgpu: false,
            own_pid: 100,
        }
    }

    #[test]
    fn the_cpu_trains_one_run_at_a_time() {
        let d = devices(vec![]);
        let mut taken = Taken::new();
        assert_eq!(
            place(BackendChoice::Cpu, None, &d, &taken),
            Placement::Start(Slot::Cpu)
        );
        assert_eq!(
            place(BackendChoice::Auto, None, &d, &taken),
            Placement::Start(Slot::Cpu)
        );
        taken.insert(Slot::Cpu, "run a".into());
        assert!(matches!(
            place(BackendChoice::Auto, None, &d, &taken),
            Placement::Wait(_)
        ));
    }

    #[test]
    fn n_gpus_take_n_runs_one_each_and_the_next_waits() {
        let d = devices(vec![gpu(0, 1, 0, &[]), gpu(1, 1, 0, &[])]);
        let mut taken = Taken::new();
        for _ in 0..2 {
            match place(BackendChoice::Auto, None, &d, &taken) {
                Placement::Start(slot) => assert!(taken.insert(slot, "run x".into()).is_none()),
                wait => panic!("{wait:?}"),
            }
        }
        let mut held: Vec<_> = taken.keys().cloned().collect();
        held.sort_by_key(|s| s.to_string());
        assert_eq!(held, [Slot::Cuda(0), Slot::Cuda(1)]);
        match place(BackendChoice::Cuda, None, &d, &taken) {
            Placement::Wait(why) => assert!(why.contains("every GPU is busy"), "{why}"),
            start => panic!("{start:?}"),
        }
        // A CPU run does not wait for the GPUs.
        assert_eq!(
            place(BackendChoice::Cpu, None, &d, &taken),
            Placement::Start(Slot::Cpu)
        );
    }

    #[test]
    fn a_gpu_another_user_computes_on_is_busy_and_our_own_processes_are_not_someone_else() {
        let d = devices(vec![gpu(0, 2, 0, &[4242]), gpu(1, 40, 60, &[100])]);
        let taken = Taken::new();
        assert_eq!(
            place(BackendChoice::Auto, None, &d, &taken),
            Placement::Start(Slot::Cuda(1))
        );
        match place(BackendChoice::Cuda, Some(0), &d, &taken) {
            Placement::Wait(why) => assert!(why.contains("alice (python)"), "{why}"),
            start => panic!("{start:?}"),
        }
    }

    #[test]
    fn the_free_gpu_with_the_most_free_memory_then_the_least_utilisation_wins() {
        let d = devices(vec![
            gpu(0, 30, 0, &[]),
            gpu(1, 10, 50, &[]),
            gpu(2, 10, 5, &[]),
        ]);
        assert_eq!(
            place(BackendChoice::Cuda, None, &d, &Taken::new()),
            Placement::Start(Slot::Cuda(2))
        );
    }

    #[test]
    fn a_named_device_that_does_not_exist_waits_with_the_reason() {
        let d = devices(vec![gpu(0, 0, 0, &[])]);
        match place(BackendChoice::Cuda, Some(3), &d, &Taken::new()) {
            Placement::Wait(why) => assert!(why.contains("cuda:3 does not exist"), "{why}"),
            start => panic!("{start:?}"),
        }
    }

    #[test]
    fn wgpu_adapters_are_devices_of_their_own_beside_the_cpu() {
        let mut d = devices(vec![]);
        d.wgpu = 1;
        let taken = Taken::from([(Slot::Cpu, "run a".to_string())]);
        assert_eq!(
            place(BackendChoice::Wgpu, None, &d, &taken),
            Placement::Start(Slot::Wgpu(0))
        );
        assert_eq!(Slot::Cuda(3).to_string(), "cuda:3");
        assert_eq!(
            Slot::Cuda(3).backend_and_device(),
            (BackendChoice::Cuda, Some(3))
        );
    }
}
