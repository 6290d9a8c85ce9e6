//! Where CubeCL keeps what it learns about this machine's GPUs: its
//! autotune results (which kernel variant is fastest for each shape) and
//! its compiled kernels. Without them every run starts by compiling and
//! benchmarking every candidate kernel again: minutes on a fresh machine.
//!
//! Both live in one per-user directory, keyed by the GPU models and the
//! Burn version (results measured on one GPU, or by another version of
//! Burn's kernels, are worthless elsewhere, and a home directory shared by
//! a cluster's nodes may see many GPUs):
//!
//! ```text
//! $MNIST_MONITOR_KERNEL_CACHE, or $XDG_CACHE_HOME/mnist-monitor/kernels,
//! or ~/.cache/mnist-monitor/kernels
//!   └── burn-0.21.0/<gpu models>/{autotune,…}
//! ```
//!
//! CubeCL's configuration is process-wide and fixed at its first use, so
//! [`configure`] runs before any GPU backend is touched: an explicit step
//! of [`crate::set_up_kernel_cache`], which `run`, `warmup` and whatever
//! probes the backends call first. This module knows nothing of the
//! backends: it is handed the GPUs' names.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The Burn version whose kernels the cache holds (the pinned one).
pub const BURN_VERSION: &str = "0.21.0";

static CONFIGURED: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The cache directory for GPUs named `gpu_names` (see the module docs).
pub fn dir(gpu_names: Vec<String>) -> Option<PathBuf> {
    let root = match std::env::var_os("MNIST_MONITOR_KERNEL_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
            .join("mnist-monitor")
            .join("kernels"),
    };
    Some(
        root.join(format!("burn-{BURN_VERSION}"))
            .join(gpu_key(gpu_names)),
    )
}

/// The GPU models of this machine as one path segment.
fn gpu_key(mut names: Vec<String>) -> String {
    names.dedup();
    let key: String = names
        .join("+")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if key.is_empty() {
        "no-gpu".into()
    } else {
        key.chars().take(120).collect()
    }
}

/// Points CubeCL's autotune and compilation caches at [`dir`], once per
/// process, before any GPU backend starts (`gpu_names` is asked only the
/// first time). Returns the directory.
pub fn configure(gpu_names: impl FnOnce() -> Vec<String>) -> Option<PathBuf> {
    CONFIGURED
        .get_or_init(|| {
            let dir = dir(gpu_names())?;
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            {
                use cubecl_runtime::config::cache::CacheConfig;
                use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
                // CubeCL's own environment variables (CUBECL_AUTOTUNE_LEVEL, …)
                // still apply on top.
                let mut config = CubeClRuntimeConfig::default().override_from_env();
                config.autotune.cache = CacheConfig::File(dir.clone());
                config.compilation.cache = Some(CacheConfig::File(dir.clone()));
                // Set at most once per process, before CubeCL reads it; a
                // panic here means something used CubeCL first.
                let set = std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config));
                if set.is_err() {
                    tracing::warn!("CubeCL was configured before the kernel cache could be set");
                }
            }
            Some(dir)
        })
        .clone()
}
