//! Which device a run trains on: the `--device` spelling (`cuda:1`,
//! `wgpu:0`, `auto`, …) and the choice among NVML's GPUs that `auto` and a
//! bare `cuda` make.
//!
//! NVML numbers GPUs in PCI bus order, as `nvidia-smi` does; the binary
//! sets `CUDA_DEVICE_ORDER=PCI_BUS_ID` so that CUDA's ordinals follow it.
//! `CUDA_VISIBLE_DEVICES` (Slurm's `--gres` sets it) narrows and renumbers
//! them: CUDA's ordinal N is the N-th GPU of that list. [`pick_gpu`] is
//! pure, so every rule is unit-tested without a GPU.

use crate::field::FieldError;
use mnist_events::GpuStats;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which compute backend to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// CUDA if a CUDA device answers (the GPU with the most free memory,
    /// then the least busy), else a hardware wgpu adapter, else the CPU.
    Auto,
    /// Burn's `flex` backend on the CPU; always built.
    Cpu,
    /// The wgpu adapter `device` names, else the first (a GPU before a
    /// software renderer); needs the `wgpu` feature.
    Wgpu,
    /// The CUDA device `device` names, else the GPU with the most free
    /// memory; needs the `cuda` feature and the NVIDIA driver.
    Cuda,
}

impl BackendChoice {
    /// The names the configuration accepts (serde's spelling).
    pub const NAMES: &'static [&'static str] = &["auto", "cpu", "wgpu", "cuda"];

    /// Serde's name of this choice.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
        }
    }
}

/// `auto`, `cpu`, `wgpu` or `cuda` (a run's `run_started` names the
/// backend it trained on this way).
impl std::str::FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "wgpu" => Ok(BackendChoice::Wgpu),
            "cuda" => Ok(BackendChoice::Cuda),
            _ => Err(format!(
                "no backend {s:?}: one of {}",
                BackendChoice::NAMES.join(", ")
            )),
        }
    }
}

/// Largest `device` index.
pub const MAX_DEVICE: u64 = 63;

/// A `--device` value: a backend, an index within it, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The backend it names; `None` for a bare index (the configured backend's).
    pub backend: Option<BackendChoice>,
    /// The index within the backend; `None` to let the backend pick.
    pub index: Option<usize>,
}

/// A `--device` value that names no device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDeviceSpec {
    /// Not one of the accepted spellings.
    #[error("{0:?} is not a device: expected auto, cpu, cuda, cuda:N, wgpu, wgpu:N or an index N")]
    Syntax(String),
    /// The index is not an integer in range.
    #[error("{0:?}: the device index must be an integer in 0..={MAX_DEVICE}")]
    Index(String),
    /// `cpu` and `auto` take no index.
    #[error("{0:?}: {1} has no device index (auto picks the device itself; name it as cuda:N or wgpu:N)")]
    NoIndex(String, &'static str),
}

impl std::str::FromStr for DeviceSpec {
    type Err = BadDeviceSpec;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        let bare_index = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (name, index) = match s.split_once(':') {
            _ if bare_index => return Ok(Self::new(None, Some(parse_index(s)?))),
            Some((name, index)) => (name, Some(index)),
            None => (s, None),
        };
        let backend: BackendChoice = name.parse().map_err(|_| BadDeviceSpec::Syntax(s.into()))?;
        let index = index
            .map(|i| parse_index(i).map_err(|_| BadDeviceSpec::Index(s.into())))
            .transpose()?;
        if index.is_some() && matches!(backend, BackendChoice::Auto | BackendChoice::Cpu) {
            return Err(BadDeviceSpec::NoIndex(s.into(), backend.as_str()));
        }
        Ok(Self::new(Some(backend), index))
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.backend, self.index) {
            (Some(b), Some(i)) => write!(f, "{}:{i}", b.as_str()),
            (Some(b), None) => write!(f, "{}", b.as_str()),
            (None, Some(i)) => write!(f, "{i}"),
            (None, None) => write!(f, "auto"),
        }
    }
}

impl DeviceSpec {
    fn new(backend: Option<BackendChoice>, index: Option<usize>) -> Self {
        Self { backend, index }
    }
}

fn parse_index(s: &str) -> Result<usize, BadDeviceSpec> {
    s.parse::<usize>()
        .ok()
        .filter(|i| *i as u64 <= MAX_DEVICE)
        .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| BadDeviceSpec::Index(s.into()))
}

/// Replaces a configuration object's `device` given as text (`"cuda:1"`)
/// by its `backend` and numeric `device`. `backend_given`: the same source
/// also set `backend`, which must then agree. A numeric or absent `device`
/// is left alone.
pub fn expand_spec(object: &mut Map<String, Value>, backend_given: bool) -> Result<(), FieldError> {
    let Some(Value::String(text)) = object.get("device") else {
        return Ok(());
    };
    let spec: DeviceSpec = text
        .parse()
        .map_err(|e: BadDeviceSpec| FieldError::new("device", e.to_string()))?;
    if let Some(backend) = spec.backend {
        let asked = object.get("backend").and_then(Value::as_str);
        if backend_given && asked.is_some_and(|b| b != backend.as_str()) {
            return Err(FieldError::new(
                "device",
                format!(
                    "{spec} is a {} device but backend is {:?}: give only the device, or the backend it names",
                    backend.as_str(),
                    asked.unwrap_or_default()
                ),
            ));
        }
        object.insert("backend".into(), backend.as_str().into());
    }
    object.insert("device".into(), spec.index.map_or(Value::Null, Value::from));
    Ok(())
}

/// The GPU `auto` (or a bare `cuda`) trains on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPick {
    /// CUDA's ordinal for it (`CudaDevice::new`): its place among the visible GPUs.
    pub ordinal: usize,
    /// NVML's (and nvidia-smi's) index of it.
    pub nvml_index: u32,
    /// Its model name, when NVML gave one.
    pub name: Option<String>,
    /// One sentence: `picked cuda:1 (NVIDIA H100 80GB HBM3: 78.9 GiB free,
    /// 0% busy) over cuda:0 (2.1 GiB free, 97% busy)`.
    pub reason: String,
}

/// The GPUs CUDA can use, each with its CUDA ordinal, in ordinal order:
/// all of NVML's, or those `visible` (`CUDA_VISIBLE_DEVICES`: indices or
/// `GPU-…` UUIDs, or unique prefixes of them) lists. Like CUDA, the list
/// ends at the first entry that names no GPU (or one named already).
pub fn visible_gpus<'a>(gpus: &'a [GpuStats], visible: Option<&str>) -> Vec<(usize, &'a GpuStats)> {
    let Some(visible) = visible else {
        return gpus.iter().enumerate().collect();
    };
    let mut shown: Vec<&GpuStats> = Vec::new();
    for entry in visible.split(',').map(str::trim) {
        let found = match entry.parse::<u32>() {
            Ok(index) => gpus.iter().find(|g| g.index == index),
            Err(_) => unique_uuid(gpus, entry),
        };
        match found {
            Some(gpu) if !shown.iter().any(|g| g.index == gpu.index) => shown.push(gpu),
            _ => break,
        }
    }
    shown.into_iter().enumerate().collect()
}

/// The one GPU whose UUID starts with `prefix` (`GPU-…`), if exactly one does.
fn unique_uuid<'a>(gpus: &'a [GpuStats], prefix: &str) -> Option<&'a GpuStats> {
    if !prefix.starts_with("GPU-") {
        return None;
    }
    let mut matching = gpus
        .iter()
        .filter(|g| g.uuid.as_deref().is_some_and(|u| u.starts_with(prefix)));
    match (matching.next(), matching.next()) {
        (Some(gpu), None) => Some(gpu),
        _ => None,
    }
}

/// The order GPUs are preferred in: the most free memory, then the least
/// busy, then the lower ordinal (what `cuda`/`auto` and the server's queue
/// both rank by).
pub fn preference(ordinal: usize, gpu: &GpuStats) -> (std::cmp::Reverse<u64>, u32, usize) {
    (
        std::cmp::Reverse(free_bytes(gpu)),
        gpu.utilization_percent.unwrap_or(0),
        ordinal,
    )
}

/// `NVIDIA H100 80GB HBM3: 78.9 GiB free, 0% busy`: a GPU as the picks'
/// reasons describe it (its `index` taken as its CUDA ordinal).
pub fn describe(gpu: &GpuStats) -> String {
    load(gpu.index as usize, gpu, true)
}

fn free_bytes(gpu: &GpuStats) -> u64 {
    gpu.memory_total_bytes
        .zip(gpu.memory_used_bytes)
        .map_or(0, |(total, used)| total.saturating_sub(used))
}

/// The visible GPU with the most free memory, then the lowest utilisation
/// (then the lowest ordinal), with the sentence saying so; `None` when no
/// GPU is visible.
pub fn pick_gpu(gpus: &[GpuStats], visible: Option<&str>) -> Option<GpuPick> {
    let mut candidates = visible_gpus(gpus, visible);
    candidates.sort_by_key(|(ordinal, g)| preference(*ordinal, g));
    let (ordinal, best) = *candidates.first()?;
    let others: Vec<String> = candidates[1..]
        .iter()
        .map(|(o, g)| format!("cuda:{o} ({})", load(*o, g, false)))
        .collect();
    let mut reason = format!("picked cuda:{ordinal} ({})", load(ordinal, best, true));
    if others.is_empty() {
        reason.push_str(", the only GPU");
    } else {
        reason.push_str(&format!(" over {}", others.join(", ")));
    }
    if let Some(list) = visible {
        reason.push_str(&format!(" that CUDA_VISIBLE_DEVICES={list} shows"));
    }
    Some(GpuPick {
        ordinal,
        nvml_index: best.index,
        name: best.name.clone(),
        reason,
    })
}

/// `NVIDIA H100 80GB HBM3: 78.9 GiB free, 0% busy` (the name only when
/// `named`; nvidia-smi's index when it differs from the ordinal).
fn load(ordinal: usize, gpu: &GpuStats, named: bool) -> String {
    let mut parts = Vec::new();
    if gpu.index as usize != ordinal {
        parts.push(format!("nvidia-smi GPU {}", gpu.index));
    }
    if let Some(name) = gpu.name.as_ref().filter(|_| named) {
        parts.push(name.clone());
    }
    let free = match gpu.memory_total_bytes.zip(gpu.memory_used_bytes) {
        Some(_) => format!(
            "{:.1} GiB free",
            free_bytes(gpu) as f64 / (1u64 << 30) as f64
        ),
        None => "free memory unknown".into(),
    };
    let busy = gpu
        .utilization_percent
        .map_or("utilisation unknown".into(), |u| format!("{u}% busy"));
    if parts.is_empty() {
        format!("{free}, {busy}")
    } else {
        format!("{}: {free}, {busy}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, free_gib: f64, util: u32) -> GpuStats {
        GpuStats {
            index,
            name: Some("NVIDIA H100 80GB HBM3".into()),
            uuid: Some(format!("GPU-{index}abc-{index}")),
            utilization_percent: Some(util),
            memory_total_bytes: Some(80 << 30),
            memory_used_bytes: Some((80 << 30) - (free_gib * (1u64 << 30) as f64) as u64),
            ..Default::default()
        }
    }

    #[test]
    fn most_free_memory_wins_and_says_why() {
        let gpus = [gpu(0, 2.1, 97), gpu(1, 78.9, 0), gpu(2, 40.0, 0)];
        let pick = pick_gpu(&gpus, None).unwrap();
        assert_eq!((pick.ordinal, pick.nvml_index), (1, 1));
        assert_eq!(
            pick.reason,
            "picked cuda:1 (NVIDIA H100 80GB HBM3: 78.9 GiB free, 0% busy) over \
             cuda:2 (40.0 GiB free, 0% busy), cuda:0 (2.1 GiB free, 97% busy)"
        );
    }

    #[test]
    fn utilisation_breaks_ties_then_the_lower_ordinal() {
        let gpus = [gpu(0, 40.0, 50), gpu(1, 40.0, 10), gpu(2, 40.0, 10)];
        assert_eq!(pick_gpu(&gpus, None).unwrap().ordinal, 1);
        let one = pick_gpu(&gpus[..1], None).unwrap();
        assert!(
            one.reason.ends_with("50% busy), the only GPU"),
            "{}",
            one.reason
        );
        // Nothing known about a GPU: it still counts, after the known ones.
        let blank = GpuStats {
            index: 3,
            ..Default::default()
        };
        let pick = pick_gpu(&[blank], None).unwrap();
        assert_eq!(pick.ordinal, 0);
        assert!(pick
            .reason
            .contains("free memory unknown, utilisation unknown"));
    }

    #[test]
    fn cuda_visible_devices_by_index_renumbers() {
        let gpus = [
            gpu(0, 70.0, 0),
            gpu(1, 10.0, 0),
            gpu(2, 20.0, 0),
            gpu(3, 5.0, 0),
        ];
        let pick = pick_gpu(&gpus, Some("3,2")).unwrap();
        // nvidia-smi's GPU 2 is CUDA's second visible device.
        assert_eq!((pick.ordinal, pick.nvml_index), (1, 2));
        assert!(
            pick.reason
                .starts_with("picked cuda:1 (nvidia-smi GPU 2, NVIDIA")
                && pick
                    .reason
                    .contains("over cuda:0 (nvidia-smi GPU 3: 5.0 GiB free")
                && pick.reason.ends_with("that CUDA_VISIBLE_DEVICES=3,2 shows"),
            "{}",
            pick.reason
        );
        // The list ends at an entry that names no GPU, as CUDA reads it.
        let shown: Vec<u32> = visible_gpus(&gpus, Some("1, 7, 0"))
            .iter()
            .map(|(_, g)| g.index)
            .collect();
        assert_eq!(shown, [1]);
        assert_eq!(visible_gpus(&gpus, Some("2,2,0")).len(), 1);
    }

    #[test]
    fn cuda_visible_devices_by_uuid_and_prefix() {
        let gpus = [gpu(0, 70.0, 0), gpu(1, 10.0, 0), gpu(2, 20.0, 0)];
        let pick = pick_gpu(&gpus, Some("GPU-2abc-2,GPU-1")).unwrap();
        assert_eq!((pick.ordinal, pick.nvml_index), (0, 2));
        // A prefix that two UUIDs share names neither.
        let gpus = [gpu(10, 1.0, 0), gpu(11, 1.0, 0)];
        assert!(pick_gpu(&gpus, Some("GPU-1")).is_none());
        assert_eq!(pick_gpu(&gpus, Some("GPU-11")).unwrap().nvml_index, 11);
    }

    #[test]
    fn nothing_visible_is_none() {
        assert_eq!(pick_gpu(&[], None), None);
        let gpus = [gpu(0, 70.0, 0)];
        assert_eq!(pick_gpu(&gpus, Some("")), None);
        assert_eq!(pick_gpu(&gpus, Some("-1")), None);
        assert_eq!(pick_gpu(&gpus, Some("MIG-abc")), None);
    }

    #[test]
    fn device_specs_parse_and_print_back() {
        use BackendChoice::*;
        for (text, backend, index) in [
            ("auto", Some(Auto), None),
            ("cpu", Some(Cpu), None),
            ("cuda", Some(Cuda), None),
            ("cuda:0", Some(Cuda), Some(0)),
            ("wgpu:63", Some(Wgpu), Some(63)),
            ("1", None, Some(1)),
        ] {
            let spec: DeviceSpec = text.parse().unwrap();
            assert_eq!((spec.backend, spec.index), (backend, index), "{text}");
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn bad_device_specs_say_what_is_accepted() {
        let err = |s: &str| s.parse::<DeviceSpec>().unwrap_err();
        assert!(matches!(err("tpu"), BadDeviceSpec::Syntax(_)));
        assert!(err("tpu").to_string().contains("cuda:N"));
        assert!(matches!(err(":1"), BadDeviceSpec::Syntax(_)));
        assert!(matches!(err(""), BadDeviceSpec::Syntax(_)));
        for bad in ["cuda:x", "cuda:99", "wgpu:", "cuda:-1", "cuda:+1", "64"] {
            assert!(matches!(err(bad), BadDeviceSpec::Index(_)), "{bad}");
            assert!(err(bad).to_string().contains("0..=63"), "{bad}");
        }
        assert!(matches!(err("cpu:0"), BadDeviceSpec::NoIndex(..)));
        assert!(matches!(err("auto:1"), BadDeviceSpec::NoIndex(..)));
    }

    #[test]
    fn a_spec_in_a_config_sets_the_backend_unless_it_conflicts() {
        let expand = |v: Value, given: bool| {
            let mut object = v.as_object().unwrap().clone();
            expand_spec(&mut object, given).map(|_| Value::Object(object))
        };
        let v = serde_json::json!({"device": "cuda:1", "backend": "auto"});
        assert_eq!(
            expand(v.clone(), false).unwrap(),
            serde_json::json!({"device": 1, "backend": "cuda"})
        );
        let e = expand(v, true).unwrap_err();
        assert_eq!(e.field, "device");
        assert!(e.message.contains("\"auto\""), "{}", e.message);
        let same = serde_json::json!({"device": "cuda:1", "backend": "cuda"});
        assert!(expand(same, true).is_ok());
        let bare = serde_json::json!({"device": "2", "backend": "wgpu"});
        assert_eq!(
            expand(bare, true).unwrap(),
            serde_json::json!({"device": 2, "backend": "wgpu"})
        );
        let cpu = serde_json::json!({"device": "cpu"});
        assert_eq!(
            expand(cpu, false).unwrap(),
            serde_json::json!({"device": null, "backend": "cpu"})
        );
        let number = serde_json::json!({"device": 3});
        assert_eq!(expand(number.clone(), true).unwrap(), number);
        assert_eq!(
            expand(serde_json::json!({"device": "tpu"}), false)
                .unwrap_err()
                .field,
            "device"
        );
    }
}
