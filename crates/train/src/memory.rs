//! Will a configuration fit in memory? Checked before a CPU run starts.
//!
//! Running out of memory on the CPU does not fail gracefully: the allocator
//! aborts the whole process (a `serve` with every viewer, and a run log
//! without `run_finished`). So the trainer estimates what a configuration
//! needs and refuses, with the figures, what the machine cannot hold. On a
//! GPU an allocation failure is a panic inside the backend, which the run
//! catches and reports as failed, so no estimate is needed there.

use crate::config::{FieldError, TrainConfig, MAX_BATCH_SIZE};

/// Bytes per activation value (f32).
const F32: u64 = 4;
/// Bytes per image per layer output alive during a training step, in
/// copies of the forward output (the output kept for backward, its
/// gradient, the pooling winners and dropout masks). Measured (peak RSS of
/// CPU runs, BENCHMARKS.md): about 1.6 between kernels 64,128,128,128 and
/// 128,256,256,256 at batch 256; 2 keeps a margin.
const TRAIN_COPIES: u64 = 2;
/// The process itself: code, the data set as read, allocator slack
/// (measured about 80-130 MiB besides the data on the device).
const BASE: u64 = 256 << 20;

/// What a run of `config` needs, in bytes, on a data set of `train_images`
/// training images (held on the device, normalised, for the whole run).
pub fn estimate(config: &TrainConfig, train_images: usize, eval_images: usize) -> u64 {
    let summary = config.model().summary();
    let per_image: u64 = summary
        .layers
        .iter()
        .map(|l| l.output_shape.iter().product::<usize>() as u64)
        .sum::<u64>()
        * F32;
    let params = summary.total_params as u64 * F32;
    let data = (train_images + eval_images) as u64 * 784 * F32;
    let batch = config.batch_size as u64;
    // Evaluation runs in batches of the same size, forward only: less.
    let step = batch * TRAIN_COPIES * per_image;
    // Weights, their gradients and Adam's two moments.
    BASE + data + 4 * params + step
}

/// The largest batch size whose estimate fits in `available` bytes.
pub fn largest_batch(
    config: &TrainConfig,
    train_images: usize,
    eval_images: usize,
    available: u64,
) -> usize {
    let (mut lo, mut hi) = (0usize, config.batch_size);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let c = TrainConfig {
            batch_size: mid,
            ..config.clone()
        };
        if estimate(&c, train_images, eval_images) <= available {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Memory this process can still use, and what sets the bound: the least
/// of the machine's available memory, its cgroup's limit (containers,
/// systemd, Slurm) and its own address-space limit (`ulimit -v`).
pub fn available() -> Option<(u64, &'static str)> {
    let mut bounds: Vec<(u64, &'static str)> = Vec::new();
    if let Some(kb) = meminfo("MemAvailable:") {
        bounds.push((kb * 1024, "available memory (MemAvailable)"));
    }
    if let Some(free) = cgroup_free() {
        bounds.push((free, "the cgroup's memory limit"));
    }
    if let Some(free) = address_space_free() {
        bounds.push((free, "the address-space limit (ulimit -v)"));
    }
    bounds.into_iter().min_by_key(|(b, _)| *b)
}

fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// cgroup v2: `memory.max` minus `memory.current` of this process's group.
fn cgroup_free() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max" means none
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// `RLIMIT_AS` minus the address space already mapped (`VmSize`).
fn address_space_free() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    // "Max address space  <soft> <hard> bytes"
    let soft: u64 = line
        .trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?; // "unlimited" does not parse
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let used_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(soft.saturating_sub(used_kb * 1024))
}

/// Refuses a configuration that would not fit in what [`available`] says is
/// free, naming the figures and the largest batch size that fits.
pub fn check(
    config: &TrainConfig,
    train_images: usize,
    eval_images: usize,
) -> Result<(), FieldError> {
    let need = estimate(config, train_images, eval_images);
    let Some((free, bound)) = available() else {
        return Ok(());
    };
    if need <= free {
        return Ok(());
    }
    let fits = largest_batch(config, train_images, eval_images, free);
    let advice = if fits > 0 {
        format!("batch_size {fits} or less fits (allowed 1..={MAX_BATCH_SIZE})")
    } else {
        "no batch size fits with these kernels: lower kernels".to_string()
    };
    Err(FieldError::new(
        "batch_size",
        format!(
            "this run needs about {} (batch {} through kernels {:?}) but only {} is free ({bound}); {advice}",
            gib(need),
            config.batch_size,
            config.kernels,
            gib(free),
        ),
    ))
}

/// [`check`] before the data is split: the split sizes from the file sizes.
pub fn check_data(
    config: &TrainConfig,
    train_file: usize,
    test_file: usize,
) -> Result<(), FieldError> {
    let limit = |n: usize, l: Option<usize>| l.map_or(n, |l| l.min(n));
    let val = config.val_size.min(train_file);
    let train = limit(train_file - val, config.limit_train);
    let eval = limit(val, config.limit_val) + limit(test_file, config.limit_test);
    check(config, train, eval)
}

/// Gibibytes, for messages.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_grows_with_batch_and_kernels_and_inverts() {
        let small = TrainConfig::default();
        let big = TrainConfig {
            kernels: [512; 4],
            batch_size: 4096,
            ..TrainConfig::default()
        };
        let (s, b) = (
            estimate(&small, 55_000, 15_000),
            estimate(&big, 55_000, 15_000),
        );
        assert!(s < 2 << 30, "the default fits a small machine: {}", gib(s));
        assert!(b > 20 << 30, "512×4 kernels at batch 4096: {}", gib(b));
        let fits = largest_batch(&big, 55_000, 15_000, 6 << 30);
        assert!(fits > 0 && fits < 4096, "{fits}");
        let at = TrainConfig {
            batch_size: fits,
            ..big.clone()
        };
        assert!(estimate(&at, 55_000, 15_000) <= 6 << 30);
        let over = TrainConfig {
            batch_size: fits + 1,
            ..big
        };
        assert!(estimate(&over, 55_000, 15_000) > 6 << 30);
    }

    #[test]
    fn this_machine_reports_a_bound() {
        let (bytes, why) = available().expect("Linux reports MemAvailable");
        assert!(bytes > 0, "{why}");
    }
}
